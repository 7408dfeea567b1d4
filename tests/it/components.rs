//! Every test component under tests/components must have a test here: the
//! build script lists them in `foreach_test_component!`, and each name must
//! resolve to a test function in `sandbox`, so adding a component without a
//! test fails to compile.

include!(concat!(env!("OUT_DIR"), "/test_components.rs"));

macro_rules! has_test {
    ($name:ident) => {
        const _: fn() = crate::sandbox::$name;
    };
}

foreach_test_component!(has_test);
