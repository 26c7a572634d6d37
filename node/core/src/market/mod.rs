//! The market participant: what this node knows of other providers' capacity and how a
//! gateway chooses among them ([`book`]), what it owes the market as provider, checker and
//! dispute party ([`duties`]), the output delivery of jobs opened through it ([`gateway`]),
//! and the stage times of every job ([`measurements`]).
//!
//! Everything here is pure and deterministic, like the ledger core: the time comes in as
//! `now_ms`, the ledger state as a `&State`, and results go out as values. It never does I/O,
//! never reads a clock and never iterates a hash map, so two nodes with the same adverts and
//! the same state pick the same provider.

pub mod book;
pub mod duties;
pub mod gateway;
pub mod measurements;

pub use book::{AdvertBook, HeldAdvert, NoProvider, Offer, Request};
pub use duties::{
    CheatsNotCompiled, Duties, Duty, DutyKey, JobRun, MarketConfig, Purpose, Stats as DutyStats,
};
pub use gateway::{Gateway, GatewayStats};
pub use measurements::{JobClock, Measurements};
