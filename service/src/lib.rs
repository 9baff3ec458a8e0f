//! Stampede issuance service: hands a limited stock of coupons to a stampede of users,
//! first come first served, never overselling and never issuing a user two coupons.
//!
//! The HTTP API ([`server`]) and the pipeline roles (relay, writer, audit) over the shared
//! core (`stampede_core`: ids, the Redis store and its Lua scripts, Kafka, PostgreSQL). See
//! `docs/architecture.md` for the data path.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod cli;
mod close;
pub mod epoch;
mod http;
pub mod metrics;
pub mod relay;
pub mod server;
mod soldout;
pub mod writer;
