//! openbatch-autoscale
