//! Black-box tests of the application: over real sockets, PostgreSQL (with
//! and without TimescaleDB), SQLite, Redis, an SMTP sink and a headless
//! Chromium. One binary, so that the application is linked once; a module
//! per concern (`cargo test --test app history::` runs one).

mod common;

mod access;
mod alerts;
mod api;
mod api_keys;
mod audit;
mod auth;
mod browser;
mod cli;
mod detect;
mod faults;
mod field;
mod history;
mod ingest;
mod mfa;
mod multi_node;
mod notify;
mod persistence;
mod rules;
mod sessions;
mod store;
