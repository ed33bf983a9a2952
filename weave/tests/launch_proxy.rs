//! The launcher and the proxy agree: what `weave launch-proxy` puts on the proxy's command line
//! is what the proxy's own flag check accepts (or refuses, with the flag to give). The two
//! crates meet only in this program, so this is where their agreement is tested.

use api::DockerAddr;
use bollard::models::ContainerCreateBody;
use clap::Parser;
use weavecli::spec::{Host, image, proxy, proxy_listen};

fn host() -> Host {
    Host {
        image: image(None, Some("1.0")),
        docker_socket: "/var/run/docker.sock".into(),
        router_addr: "127.0.0.1:6784".to_owned(),
    }
}

/// The proxy's own flag check, run on the command line `launch-proxy` gives it.
fn proxy_accepts(body: &ContainerCreateBody) -> Result<Vec<DockerAddr>, String> {
    let argv = std::iter::once("weaveproxy".to_owned()).chain(body.cmd.clone().unwrap());
    let cli = weaveproxy::config::Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    weaveproxy::config::Config::from_cli(cli).map(|config| config.plain_network)
}

#[test]
fn launch_proxy_passes_tls_false_through_and_its_default_is_never_refused() {
    use weavecli::args::{Cli, Command};

    let launch = |args: &[&str], docker_host: &str| {
        let argv = ["weave", "launch-proxy"].iter().chain(args);
        let Command::LaunchProxy(parsed) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not launch-proxy");
        };
        let listen = proxy_listen(&parsed.proxy, docker_host, None);
        let body = proxy(&host(), &parsed.common, &parsed.proxy, &listen, None).unwrap();
        proxy_accepts(&body)
    };
    let every = || Ok(vec![DockerAddr::Tcp("0.0.0.0:12375".to_owned())]);
    let unix = "unix:///var/run/docker.sock";
    assert_eq!(
        launch(&["-H", "tcp://0.0.0.0:12375", "--tls=false"], unix),
        every()
    );
    let refused = launch(&["-H", "tcp://0.0.0.0:12375"], unix).unwrap_err();
    assert!(refused.contains("--tls=false"), "{refused}");
    // The default beside a plain daemon on the network mirrors it, and is told so.
    assert_eq!(
        launch(&[], "tcp://10.0.0.5:2375"),
        Ok(vec![DockerAddr::Tcp("10.0.0.5:12375".to_owned())])
    );
    assert_eq!(launch(&[], "tcp://localhost:2375"), Ok(vec![]));
    // `--tls` alone means true, as in dockerd; `--tls false` is no value but a stray word.
    let argv = ["weave", "launch-proxy", "--tls"];
    let Command::LaunchProxy(parsed) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not launch-proxy");
    };
    assert_eq!(parsed.proxy.tls, Some(true));
    assert!(Cli::try_parse_from(["weave", "launch-proxy", "--tls", "false"]).is_err());
}
