//! openbatch-core
