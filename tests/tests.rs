//! End-to-end tests: the library API and the CLI against the tiny generated
//! model pair from `smolvlm-testkit`. No network, no downloaded model.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod util;

mod batch;
mod batch_api;
mod cancel;
mod caption;
mod cli;
mod cli_chat;
mod concurrency;
mod conversation;
mod engine;
mod errors;
mod hub;
mod hub_pairs;
mod hub_server;
mod image;
mod jpeg;
mod parity;
mod real_scale;
mod reliability;
mod video;
mod worker;
