//! Stampede issuance service: hands a limited stock of coupons to a stampede of users,
//! first come first served, never overselling and never issuing a user two coupons.
#![forbid(unsafe_code)]

pub mod campaign;
pub mod cli;
pub mod clock;
pub mod coupon;
mod error;
pub mod http;
pub mod ids;
pub mod keys;
pub mod metrics;
pub mod server;
pub mod soldout;
pub mod store;

pub use error::Error;
