//! `platform` of an event from its context (SPEC §3).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Context<'a> {
    #[serde(borrow, default)]
    os: Option<&'a RawValue>,
    #[serde(borrow, default)]
    page: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "userAgent")]
    user_agent: Option<&'a RawValue>,
    #[serde(borrow, default)]
    library: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

fn name_of(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Named>(raw?.get()).ok()?.name
}

/// `ios`, `android`, `web` or `server`. A context that is not a JSON object
/// (or absent) names no client, so the event came from a server.
pub fn platform(context: Option<&str>) -> &'static str {
    let Some(context) = context else {
        return "server";
    };
    let Ok(context) = serde_json::from_str::<Context>(context) else {
        return "server";
    };
    if let Some(os) = name_of(context.os) {
        if os.eq_ignore_ascii_case("ios") || os.eq_ignore_ascii_case("ipados") {
            return "ios";
        }
        if os.eq_ignore_ascii_case("android") {
            return "android";
        }
    }
    let library_is_browser =
        name_of(context.library).is_some_and(|name| name.starts_with("analytics.js"));
    if context.page.is_some() || context.user_agent.is_some() || library_is_browser {
        return "web";
    }
    "server"
}

#[cfg(test)]
mod tests {
    use super::platform;

    #[test]
    fn follows_the_spec_order() {
        assert_eq!(
            platform(Some(r#"{"os":{"name":"iPadOS"},"page":{}}"#)),
            "ios"
        );
        assert_eq!(platform(Some(r#"{"os":{"name":"ANDROID"}}"#)), "android");
        assert_eq!(
            platform(Some(r#"{"os":{"name":"Mac OS X"},"userAgent":"x"}"#)),
            "web"
        );
        assert_eq!(platform(Some(r#"{"page":{"path":"/"}}"#)), "web");
        assert_eq!(
            platform(Some(r#"{"library":{"name":"analytics.js-next"}}"#)),
            "web"
        );
        assert_eq!(
            platform(Some(r#"{"library":{"name":"analytics-node"}}"#)),
            "server"
        );
        assert_eq!(platform(Some(r#"{"os":"iOS"}"#)), "server");
        assert_eq!(platform(Some("not json")), "server");
        assert_eq!(platform(None), "server");
        assert_eq!(platform(Some(r#"{"os":{"name":"i\u004fS"}}"#)), "ios");
    }
}
