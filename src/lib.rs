//! cinderblock: a self-hosted block-storage service speaking the Huawei Cloud EVS API and the
//! OpenStack Cinder v2/v3 API.
//!
//! Layers, top to bottom (dependencies point down only):
//! - [`api`]: HTTP wire formats (EVS, Cinder, version discovery); extracts input, renders output
//!   and errors, never touches storage or SQL.
//! - [`service`]: validation, capacity, compare-and-set status changes and job enqueueing, each
//!   mutation in one transaction.
//! - [`store`]: the only place SQL lives (SQLite or PostgreSQL through one `AnyPool`).
//! - [`jobs`]: the durable job runner and start-up recovery.
//! - [`driver`]: storage allocation (sparse files with reflink).
//! - [`model`]: ids, statuses and records shared by all layers.
//!
//! A mutating request never does storage work itself: it moves the resource to a transitional
//! status and inserts a job in the same transaction; a worker finishes both.

pub mod admin;
pub mod api;
pub mod app;
pub mod config;
pub mod driver;
pub mod error;
pub mod export;
pub mod image;
pub mod jobs;
pub mod model;
pub mod ops;
pub mod service;
pub mod store;
pub mod tls;
