//! openbatch-client
