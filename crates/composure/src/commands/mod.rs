//! One module per verb.

pub mod client;
pub mod config;
pub mod daemon;
pub mod down;
pub mod events;
pub mod exec;
pub mod gpus;
pub mod images;
pub mod ingress;
pub mod logs;
pub mod ls;
pub mod node;
pub mod project;
pub mod ps;
pub mod replicas;
pub mod rollout;
pub mod scale;
pub mod up;
pub mod version;
pub mod vip;
