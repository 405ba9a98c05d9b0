//! What every part shares about the cluster: clients, API errors, events, labels and names, the shared watches.

pub mod clients;
pub mod errors;
pub mod events;
pub mod labels;
pub mod watches;
