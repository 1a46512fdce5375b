//! Blob storage for openbatch: the account's **auto-storage** (where `autoStorageContainerName`
//! resource files come from) and the pieces of the server's own blob endpoint.
//!
//! * [`Storage`] opens the configured backend on `object_store`: a local directory (the
//!   embedded default, `DATA_DIR/storage`), Azure Blob Storage or Azurite (account key or SAS),
//!   or an S3-compatible bucket. A [`Container`] lists, reads and writes blobs whatever holds
//!   them.
//! * [`UrlSigner`] is the signed, expiring URL contract of the server's blob endpoint (which
//!   serves the local backend to nodes over HTTP, speaking the subset of the Azure Blob REST
//!   protocol nodes need); [`blobxml`] and [`blocks`] are that endpoint's XML and staged blocks.
//! * [`azure_sas`] signs Azure container SAS URLs with an account key.
//!
//! Not for: HTTP serving (the server does that) or anything the node agent does.

pub mod azure_sas;
mod backend;
pub mod blobxml;
pub mod blocks;
mod config;
pub mod sas;

pub use backend::{check_blob_name, check_container_name, BlobInfo, Container, Storage};
pub use config::{BackendKind, StorageConfig};
pub use sas::{Permission, SasError, UrlSigner};

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
pub(crate) fn encode_query_value(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// What can go wrong with storage, each with a stable code for the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("storage configuration: {0}")]
    Config(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Incomplete(String),
    #[error("storage backend error: {0}")]
    Backend(String),
}
