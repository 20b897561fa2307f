//! Palisade: a security gateway for the Model Context Protocol.
//!
//! The request pipeline is in [`app::pipeline`]; each control is a module of [`controls`].

#![warn(missing_docs)]

pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod controls;
pub mod demo;
pub mod hub;
pub mod issuer;
pub mod proto;
pub mod run;
pub mod sandbox;
pub mod tls;
pub mod upstream;
