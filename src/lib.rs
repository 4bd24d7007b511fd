//! mcp-edge: a single-binary TLS edge server for the Model Context Protocol.
#![deny(unsafe_code)]

pub mod acme;
pub mod app;
pub mod auth;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod docs;
pub mod healthcheck;
pub mod host;
pub mod html;
pub mod init_secrets;
pub mod mcp;
pub mod memory;
pub mod metrics;
pub mod oauth;
pub mod preflight;
pub mod ratelimit;
pub mod redirect;
pub mod reload;
pub mod server;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod tls;
