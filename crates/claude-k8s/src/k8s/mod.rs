//! What every part shares about the cluster: clients, API errors, events, labels and names.

pub mod clients;
pub mod errors;
pub mod events;
pub mod labels;
