//! Responses that show a container's command: clients see the command they asked for.
//!
//! `GET /containers/json` (`Command`) and `GET /containers/{id}/json` (`Path`, `Args`,
//! `Config.Entrypoint`) are shown without the `/w/w` the proxy put in front, as they would be
//! without the proxy. The original proxy showed `/w/w true`, which broke docker-py's own
//! container-listing test. The daemon itself, and `docker ps` straight to it, still show the
//! truth. Only called for bodies that mention `/w/w`.

use serde_json::Value;

use crate::intercept::create::WEAVEWAIT;

/// Strips `/w/w ` from each container's `Command` in a container list. Returns whether
/// anything changed.
pub fn hide_in_list(list: &mut Value) -> bool {
    let Some(containers) = list.as_array_mut() else {
        return false;
    };
    let mut changed = false;
    for container in containers {
        let Some(Value::String(command)) = container.get_mut("Command") else {
            continue;
        };
        if let Some(rest) = command
            .strip_prefix(WEAVEWAIT)
            .filter(|rest| rest.is_empty() || rest.starts_with(' '))
        {
            *command = rest.trim_start_matches(' ').to_owned();
            changed = true;
        }
    }
    changed
}

/// Shows an inspected container's `Path`, `Args` and `Config.Entrypoint` without `/w/w`.
/// Returns whether anything changed.
pub fn hide_in_inspect(container: &mut Value) -> bool {
    let Some(object) = container.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    let wrapped = object.get("Path").and_then(Value::as_str) == Some(WEAVEWAIT);
    if let (true, Some(Value::Array(args))) = (wrapped, object.get_mut("Args"))
        && let Some(Value::String(_)) = args.first()
    {
        let path = args.remove(0);
        object.insert("Path".into(), path);
        changed = true;
    }
    if let Some(Value::Object(config)) = object.get_mut("Config")
        && let Some(Value::Array(entrypoint)) = config.get_mut("Entrypoint")
        && entrypoint.first().and_then(Value::as_str) == Some(WEAVEWAIT)
    {
        entrypoint.remove(0);
        if entrypoint.is_empty() {
            // Docker shows no entrypoint as null, not as an empty list.
            config.insert("Entrypoint".into(), Value::Null);
        }
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn list_shows_the_users_command() {
        let mut list = json!([
            {"Id": "a", "Command": "/w/w sleep 300", "Names": ["/a"]},
            {"Id": "b", "Command": "/w/wx --flag"},
            {"Id": "c", "Command": "sh"},
            {"Id": "d", "Command": "/w/w"},
        ]);
        assert!(hide_in_list(&mut list));
        let commands: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["Command"].as_str().unwrap())
            .collect();
        assert_eq!(commands, ["sleep 300", "/w/wx --flag", "sh", ""]);
        assert!(!hide_in_list(&mut json!([{"Command": "sh"}])));
        assert!(!hide_in_list(&mut json!({"message": "x"})));
    }

    #[test]
    fn inspect_shows_the_users_entrypoint() {
        let mut c = json!({
            "Path": "/w/w", "Args": ["grep", "-v", "x"],
            "Config": {"Entrypoint": ["/w/w", "grep"], "Cmd": ["-v", "x"]}
        });
        assert!(hide_in_inspect(&mut c));
        assert_eq!(
            c,
            json!({"Path": "grep", "Args": ["-v", "x"],
                   "Config": {"Entrypoint": ["grep"], "Cmd": ["-v", "x"]}})
        );
        let mut only_cmd = json!({
            "Path": "/w/w", "Args": ["echo", "ok"],
            "Config": {"Entrypoint": ["/w/w"], "Cmd": ["echo", "ok"]}
        });
        assert!(hide_in_inspect(&mut only_cmd));
        assert_eq!(only_cmd["Path"], "echo");
        assert_eq!(only_cmd["Config"]["Entrypoint"], Value::Null);
        let mut plain = json!({"Path": "sh", "Args": [], "Config": {"Entrypoint": null}});
        assert!(!hide_in_inspect(&mut plain));
    }
}
