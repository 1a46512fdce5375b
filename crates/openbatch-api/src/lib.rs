//! The Azure Batch wire model, as openbatch speaks it.
//!
//! This crate is the only place that knows the JSON of the Azure Batch data-plane REST API
//! (2025-06-01 shapes, older api-versions accepted): request and response bodies (serde,
//! camelCase), the error body and its codes, ISO-8601 durations and timestamps, the OData
//! `$filter` subset, and Shared Key request signing (used by the server to verify and by
//! clients to sign).
//!
//! It is not for behaviour: no state, no I/O, no scheduling. The core and the server
//! translate between these types and their own.

pub mod agent;
pub mod auth;
pub mod error;
pub mod models;
pub mod odata;
pub mod time;
