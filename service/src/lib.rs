//! Stampede issuance service: hands a limited stock of coupons to a stampede of users,
//! first come first served, never overselling and never issuing a user two coupons.
#![forbid(unsafe_code)]

pub mod audit;
pub mod campaign;
pub mod cli;
pub mod clock;
pub mod coupon;
pub mod db;
mod error;
pub mod http;
pub mod ids;
pub mod issuance;
pub mod kafka;
pub mod keys;
pub mod metrics;
pub mod relay;
pub mod server;
pub mod soldout;
pub mod store;
pub mod writer;

pub use error::Error;
