//! openbatch-store
