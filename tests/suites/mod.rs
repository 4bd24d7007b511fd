mod access;
mod cli;
mod config_files;
mod mcp_http;
mod python_sdk;
mod sessions;
mod shutdown;
mod stdio;
