//! WeChat's server APIs: `jscode2session` over HTTP and the WXBizDataCrypt rules.

pub mod client;
pub mod crypto;
