//! mcp-edge: a single-binary TLS edge server for the Model Context Protocol.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod docs;
pub mod error;
pub mod healthcheck;
pub mod mcp;
pub mod ratelimit;
pub mod secrets;
pub mod server;
pub mod telemetry;
pub mod tls;
