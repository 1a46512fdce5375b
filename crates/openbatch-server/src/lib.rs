//! openbatch-server
