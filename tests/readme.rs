//! The README's examples stay true: its config file parses and resolves.

use tms::experiment::Settings;

#[test]
fn readme_config_example_resolves() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("README has a TOML example") + "```toml\n".len();
    let text = &readme[start..start + readme[start..].find("```").unwrap()];
    let exp = Settings::from_toml_str(text).unwrap().resolve().unwrap();
    assert_eq!(exp.instances.len(), 2);
    assert_eq!(exp.instances[0].importance[2], 0.49f32.max(0.7f32 * 0.7));
    assert_eq!(exp.instances[1].importance[19], 0.14);
}
