//! `c1m-server`: the echo server of the million-connection test, in each of the course's server
//! models (`--model`, [`models`]). What every model shares: the greeting protocol and the
//! counting of closes ([`conn`]), the counters behind the JSON stats lines ([`counters`]),
//! per-fd state ([`slots`]), and the edge-triggered epoll loop of the asynchronous models
//! ([`event_loop`]). Its command line is [`c1m_proto::launch::ServerSpec`]; what each model is,
//! is [`c1m_proto::model::ServerModel`].

pub mod conn;
pub mod counters;
pub mod event_loop;
pub mod models;
pub mod slots;
