//! Test component: every stage at the SDK default (accept, identity, the
//! route's `to:` list). Measures pure host overhead in benchmarks and stands
//! in as a harmless plugin in tests.
use hookgate_plugin_sdk::{self as sdk, Plugin};

struct Noop;

impl Plugin for Noop {}

sdk::export!(Noop, stages: [verify, transform, route]);
