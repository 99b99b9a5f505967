//! Setting element properties from configuration values, with errors instead of the
//! panics `set_property` gives for an unknown name or a value out of range.

use gst::glib;
use gst::prelude::*;

/// Sets `name` on `element` from its string form (an enum's nick, a number, a boolean).
pub fn set_from_str(element: &gst::Element, name: &str, value: &str) -> Result<(), String> {
    let factory = element
        .factory()
        .map(|f| f.name().to_string())
        .unwrap_or_else(|| element.type_().name().to_owned());
    let pspec = element
        .find_property(name)
        .ok_or_else(|| format!("{factory} has no property {name}"))?;
    if !pspec.flags().contains(glib::ParamFlags::WRITABLE) {
        return Err(format!("{factory}'s {name} is read-only"));
    }
    let v = glib::Value::deserialize_with_pspec(value, &pspec)
        .map_err(|_| format!("{factory}'s {name}: {value:?} is not a valid value"))?;
    if !in_range(&pspec, &v) {
        return Err(format!(
            "{factory}'s {name}: {value:?} is out of range ({})",
            pspec.blurb().unwrap_or("see gst-inspect-1.0")
        ));
    }
    element.set_property_from_value(name, &v);
    Ok(())
}

/// Whether a numeric value lies within the property's bounds (other values are valid once
/// deserialised).
fn in_range(pspec: &glib::ParamSpec, v: &glib::Value) -> bool {
    fn within<T: PartialOrd + for<'a> glib::value::FromValue<'a>>(
        v: &glib::Value,
        min: T,
        max: T,
    ) -> bool {
        v.get::<T>().is_ok_and(|x| x >= min && x <= max)
    }
    if let Some(p) = pspec.downcast_ref::<glib::ParamSpecUInt>() {
        within(v, p.minimum(), p.maximum())
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecInt>() {
        within(v, p.minimum(), p.maximum())
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecUInt64>() {
        within(v, p.minimum(), p.maximum())
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecInt64>() {
        within(v, p.minimum(), p.maximum())
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecFloat>() {
        within(v, p.minimum(), p.maximum())
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecDouble>() {
        within(v, p.minimum(), p.maximum())
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> gst::Element {
        gst::init().unwrap();
        gst::ElementFactory::make("queue").build().unwrap()
    }

    #[test]
    fn a_value_is_set_from_its_string_form() {
        let q = queue();
        set_from_str(&q, "max-size-buffers", "7").unwrap();
        set_from_str(&q, "leaky", "downstream").unwrap();
        assert_eq!(q.property::<u32>("max-size-buffers"), 7);
    }

    #[test]
    fn unknown_names_and_bad_values_are_errors_not_panics() {
        let q = queue();
        assert_eq!(
            set_from_str(&q, "nope", "1").unwrap_err(),
            "queue has no property nope"
        );
        assert!(
            set_from_str(&q, "leaky", "sideways")
                .unwrap_err()
                .contains("\"sideways\" is not a valid value")
        );
        assert!(
            set_from_str(&q, "current-level-buffers", "1")
                .unwrap_err()
                .contains("read-only")
        );
    }

    #[test]
    fn a_number_outside_the_property_s_range_is_refused() {
        gst::init().unwrap();
        gstsd2::plugin_register_static().unwrap();
        let d = gst::ElementFactory::make("sd2deepfake").build().unwrap();
        let e = set_from_str(&d, "threshold", "1.5").unwrap_err();
        assert!(
            e.starts_with("sd2deepfake's threshold: \"1.5\" is out of range"),
            "{e}"
        );
        set_from_str(&d, "threshold", "0.75").unwrap();
        assert_eq!(d.property::<f32>("threshold"), 0.75);
    }
}
