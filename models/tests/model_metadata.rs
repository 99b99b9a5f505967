//! The model contract's metadata: what `sd2-train export` writes reads back as it was, and
//! any other map of entries reads as metadata or fails naming an entry, never panicking.

use std::collections::HashMap;

use proptest::prelude::*;
use sd2_models::contract::{
    GraphInfo, GraphKind, GraphPrecision, MetadataError, ModelMetadata, key,
};
use sd2_models::crop::CropRecipe;
use sd2_models::taxonomy::DeepfakeType;

use prop::num::f32::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};

fn finite() -> impl Strategy<Value = f32> {
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

fn positive() -> impl Strategy<Value = f32> {
    POSITIVE | NORMAL | SUBNORMAL
}

fn recipe() -> impl Strategy<Value = CropRecipe> {
    (
        1usize..=4096,
        positive(),
        prop::array::uniform3(finite()),
        prop::array::uniform3(positive()),
    )
        .prop_map(|(input_size, scale, mean, std)| CropRecipe {
            input_size,
            scale,
            mean,
            std,
        })
}

fn graph() -> impl Strategy<Value = Option<GraphInfo>> {
    prop::option::of(
        (
            prop::sample::select(GraphKind::ALL.to_vec()),
            prop::sample::select(GraphPrecision::ALL.to_vec()),
        )
            .prop_map(|(kind, precision)| GraphInfo { kind, precision }),
    )
}

prop_compose! {
    fn metadata()(
        recipe in recipe(),
        model_name in any::<String>(),
        model_version in any::<String>(),
        tau in finite(),
        labels in prop::array::uniform5(any::<String>()),
        graph in graph(),
    ) -> ModelMetadata {
        ModelMetadata {
            recipe,
            type_names: DeepfakeType::ALL,
            model_name,
            model_version,
            tau,
            labels,
            graph,
        }
    }
}

fn written(m: &ModelMetadata) -> HashMap<String, String> {
    m.to_props()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Entries whose absence a model may have: the filter (there is one), and how the graph was
/// written.
const OPTIONAL: [&str; 4] = [key::CROP_FILTER, key::GRAPH, key::PRECISION, key::PRODUCER];

/// Entries that hold any text.
const FREE_TEXT: [&str; 3] = [key::MODEL_NAME, key::MODEL_VERSION, key::PRODUCER];

fn a_key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(key::ALL.to_vec())
}

/// A value for `key`: one of the values written for it, or any text.
fn a_value(written: HashMap<String, String>, key: &'static str) -> BoxedStrategy<String> {
    match written.get(key) {
        Some(v) => prop_oneof![Just(v.clone()), any::<String>()].boxed(),
        None => any::<String>().boxed(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn written_metadata_reads_back_as_it_was(m in metadata()) {
        prop_assert_eq!(ModelMetadata::from_props(&written(&m)), Ok(m));
    }

    #[test]
    fn any_map_reads_as_metadata_or_fails_naming_an_entry(
        entries in prop::collection::hash_map(
            prop_oneof![a_key().prop_map(str::to_owned), any::<String>()],
            any::<String>(),
            0..16,
        ),
    ) {
        match ModelMetadata::from_props(&entries) {
            Ok(m) => prop_assert_eq!(ModelMetadata::from_props(&written(&m)), Ok(m)),
            Err(e) => prop_assert!(key::ALL.contains(&e.key()), "{}", e),
        }
    }

    #[test]
    fn a_written_map_without_a_required_entry_fails_naming_it(
        m in metadata(),
        gone in a_key(),
    ) {
        let mut map = written(&m);
        map.remove(gone);
        let read = ModelMetadata::from_props(&map);
        let required = !OPTIONAL.contains(&gone) || (gone == key::PRECISION && m.graph.is_some());
        if required {
            let e = read.unwrap_err();
            prop_assert_eq!(e.key(), gone);
            let is_missing = matches!(e, MetadataError::Missing { .. });
            prop_assert!(is_missing, "{}", e);
        } else {
            prop_assert!(read.is_ok(), "{:?}", read);
        }
    }

    #[test]
    fn a_written_map_with_an_entry_changed_reads_or_fails_naming_it(
        (m, changed, value) in metadata().prop_flat_map(|m| {
            let map = written(&m);
            a_key().prop_flat_map(move |k| (Just(m.clone()), Just(k), a_value(map.clone(), k)))
        }),
    ) {
        let mut map = written(&m);
        map.insert(changed.to_owned(), value);
        if let Err(e) = ModelMetadata::from_props(&map) {
            prop_assert_eq!(e.key(), changed, "{}", e);
        }
    }

    #[test]
    fn a_written_map_with_garbage_in_a_structured_entry_fails_naming_it(
        m in metadata(),
        changed in a_key().prop_filter("structured", |k| !FREE_TEXT.contains(k)),
        garbage in "[x#][^,]*",
    ) {
        let mut map = written(&m);
        map.insert(changed.to_owned(), garbage);
        let read = ModelMetadata::from_props(&map);
        if changed == key::PRECISION && m.graph.is_none() {
            prop_assert!(read.is_ok(), "{:?}", read);
        } else {
            prop_assert_eq!(read.unwrap_err().key(), changed);
        }
    }
}
