//! valet-webhook (being written).
