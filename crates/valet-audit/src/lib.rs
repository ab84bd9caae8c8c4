//! valet-audit (being written).
