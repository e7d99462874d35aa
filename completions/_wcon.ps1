
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'wcon' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'wcon'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'wcon' {
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the public receiver: accept webhooks, store them durably, stream them to connectors')
            [CompletionResult]::new('tunnel', 'tunnel', [CompletionResultType]::ParameterValue, 'Connect out to a receiver and deliver channels'' webhooks to local apps or output modules')
            [CompletionResult]::new('channels', 'channels', [CompletionResultType]::ParameterValue, 'Inspect relay channels of a running server (admin API)')
            [CompletionResult]::new('dlq', 'dlq', [CompletionResultType]::ParameterValue, 'List, show, replay and purge dead letters of a running server (admin API)')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Write a starting config (receiver or connector) from templates, with a strong token')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send a test webhook, signed like Stripe, GitHub or Shopify, and print the answer')
            [CompletionResult]::new('dash', 'dash', [CompletionResultType]::ParameterValue, 'Watch a running server live: channels, connectors, messages, dead letters (terminal UI)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script (bash, zsh, fish, powershell, elvish)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'wcon;serve' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address to listen on')
            [CompletionResult]::new('--config-dir', '--config-dir', [CompletionResultType]::ParameterName, 'Directory holding webhooks.json and connections.json')
            [CompletionResult]::new('--webhooks', '--webhooks', [CompletionResultType]::ParameterName, 'webhooks.json to read (default: DIR/webhooks.json)')
            [CompletionResult]::new('--connections', '--connections', [CompletionResultType]::ParameterName, 'connections.json to read (default: DIR/connections.json, optional)')
            [CompletionResult]::new('--data-dir', '--data-dir', [CompletionResultType]::ParameterName, 'Where the embedded buffer keeps its data (default: the platform data directory)')
            [CompletionResult]::new('--max-body-bytes', '--max-body-bytes', [CompletionResultType]::ParameterName, 'Body limit in bytes of webhooks that set no `max_body_bytes`')
            [CompletionResult]::new('--cors-origin', '--cors-origin', [CompletionResultType]::ParameterName, 'Browser origin allowed to call the API (CORS), e.g. https://app.example.com; repeatable. Without one, CORS is off. `*` is refused')
            [CompletionResult]::new('--buffer', '--buffer', [CompletionResultType]::ParameterName, 'Buffer backend')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'PEM certificate chain: serve HTTPS and WSS (needs --tls-key). Reloaded when the file changes or on SIGHUP, without dropping connections')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'PEM private key of --tls-cert')
            [CompletionResult]::new('--tls-client-ca', '--tls-client-ca', [CompletionResultType]::ParameterName, 'PEM CA certificates that connectors'' client certificates must chain to (mutual TLS). The handshake asks for a client certificate but does not require one (webhook senders have none); channels with `require_client_cert` refuse connectors without one. Reloaded with --tls-cert')
            [CompletionResult]::new('--admin-listen', '--admin-listen', [CompletionResultType]::ParameterName, 'Serve the admin API only on this address (plain HTTP; keep it private, e.g. 127.0.0.1:9000), not on --listen')
            [CompletionResult]::new('--redis-url', '--redis-url', [CompletionResultType]::ParameterName, 'Redis of `--buffer redis`: redis://[user:password@]host:port[/db] or redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]')
            [CompletionResult]::new('--redis-prefix', '--redis-prefix', [CompletionResultType]::ParameterName, 'Prefix of the Redis keys of `--buffer redis` (deployments sharing one Redis need their own)')
            [CompletionResult]::new('--rabbitmq-url', '--rabbitmq-url', [CompletionResultType]::ParameterName, 'RabbitMQ of `--buffer rabbitmq`: amqp://user:password@host:port/vhost (the default vhost `/` is `%2f`)')
            [CompletionResult]::new('--rabbitmq-prefix', '--rabbitmq-prefix', [CompletionResultType]::ParameterName, 'Prefix of the queue names of `--buffer rabbitmq` (deployments sharing one RabbitMQ need their own)')
            [CompletionResult]::new('--rabbitmq-queue-type', '--rabbitmq-queue-type', [CompletionResultType]::ParameterName, 'Queue type of `--buffer rabbitmq`: quorum (replicated) or classic')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Validate webhooks.json and connections.json, reach every connection once, print one line per item and exit (0 when all pass, 1 otherwise) without serving')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;tunnel' {
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Where to deliver: a port, host:port, or an http(s) URL with a path')
            [CompletionResult]::new('--route', '--route', [CompletionResultType]::ParameterName, 'Stream CHANNEL to TARGET; repeat for several channels in one process. The channel token is --token (WCON_TOKEN) unless given as CHANNEL:TOKEN=TARGET (visible in `ps`: prefer `$VAR` from the shell''s environment or connector.json with `{$VAR}`)')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'The receiver''s base URL')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'The channel token (prefer WCON_TOKEN or CONNECTOR_TOKEN: flags are visible in `ps`)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'connector.json to read (single- or multi-channel shape)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'connector.json to read (single- or multi-channel shape)')
            [CompletionResult]::new('--connector-id', '--connector-id', [CompletionResultType]::ParameterName, 'Name sent as X-Connector-ID')
            [CompletionResult]::new('--webhooks', '--webhooks', [CompletionResultType]::ParameterName, 'Module mode: deliver to the output modules of this webhooks.json instead of HTTP')
            [CompletionResult]::new('--connections', '--connections', [CompletionResultType]::ParameterName, 'Module mode: the connections.json the modules use')
            [CompletionResult]::new('--concurrency', '--concurrency', [CompletionResultType]::ParameterName, 'Deliveries running at once, over every channel (`concurrency`, max_concurrent_requests)')
            [CompletionResult]::new('--protocol', '--protocol', [CompletionResultType]::ParameterName, 'Streaming transport: websocket (default), sse, long_poll, or auto (WebSocket, falling back to SSE, then long-poll, and going back up later). CONNECTOR_PROTOCOL in the env')
            [CompletionResult]::new('--ca-cert', '--ca-cert', [CompletionResultType]::ParameterName, 'Also trust the CA certificates of this PEM file for the server''s certificate (ca_cert_path); the public web roots stay trusted')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Present this PEM client certificate (chain) to the server on every transport, for channels with `require_client_cert` (client_cert_path, CONNECTOR_CLIENT_CERT_PATH)')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The PEM private key of --client-cert (client_key_path, CONNECTOR_CLIENT_KEY_PATH)')
            [CompletionResult]::new('--health-listen', '--health-listen', [CompletionResultType]::ParameterName, 'Serve GET /health and GET /metrics (Prometheus) on this address, e.g. 127.0.0.1:9090. Off by default')
            [CompletionResult]::new('--health-down-after', '--health-down-after', [CompletionResultType]::ParameterName, '/health answers 503 once a channel has been down this many seconds (default 60)')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Validate the settings, reach the server''s status endpoint with the token, every HTTP target and every connection once, print one line per item and exit (0 when all pass, 1 otherwise) without streaming')
            [CompletionResult]::new('--insecure', '--insecure', [CompletionResultType]::ParameterName, 'Do not verify the server''s TLS certificate (verify_ssl false). Unsafe: anyone on the path can read and change the stream; for tests with a self-signed certificate only')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;channels' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Every channel with its webhooks, connected clients and limits')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'One channel: settings, counts and connected clients')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)')
            [CompletionResult]::new('disconnect', 'disconnect', [CompletionResultType]::ParameterValue, 'Close one connection of a channel; its in-flight messages go back to the queue')
            [CompletionResult]::new('rotate-token', 'rotate-token', [CompletionResultType]::ParameterValue, 'Replace a channel''s token; prints the new one once. The old token keeps working for --grace, then connections still using it are closed and it is refused')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'wcon;channels;list' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;channels;show' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;channels;stats' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;channels;disconnect' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;channels;rotate-token' {
            [CompletionResult]::new('--grace', '--grace', [CompletionResultType]::ParameterName, 'How long the old token stays valid, e.g. 1h, 30m, 90s, 0 (at most 30 days)')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--save', '--save', [CompletionResultType]::ParameterName, 'Also store the new token in the profile''s config.toml (channel_tokens)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;channels;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Every channel with its webhooks, connected clients and limits')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'One channel: settings, counts and connected clients')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)')
            [CompletionResult]::new('disconnect', 'disconnect', [CompletionResultType]::ParameterValue, 'Close one connection of a channel; its in-flight messages go back to the queue')
            [CompletionResult]::new('rotate-token', 'rotate-token', [CompletionResultType]::ParameterValue, 'Replace a channel''s token; prints the new one once. The old token keeps working for --grace, then connections still using it are closed and it is refused')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'wcon;channels;help;list' {
            break
        }
        'wcon;channels;help;show' {
            break
        }
        'wcon;channels;help;stats' {
            break
        }
        'wcon;channels;help;disconnect' {
            break
        }
        'wcon;channels;help;rotate-token' {
            break
        }
        'wcon;channels;help;help' {
            break
        }
        'wcon;dlq' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Dead letters of a channel, oldest first, with why they died')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'One dead letter in full: headers, body and the last error')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Put dead letters back in the queue, with their attempts reset')
            [CompletionResult]::new('purge', 'purge', [CompletionResultType]::ParameterValue, 'Delete dead letters for good (asks first unless --yes)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'wcon;dlq;list' {
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many')
            [CompletionResult]::new('--offset', '--offset', [CompletionResultType]::ParameterName, 'Skip this many first')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;dlq;show' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;dlq;replay' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Those dead-lettered at or after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z)')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Those dead-lettered before this time (RFC 3339)')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Every dead letter of the channel (asks first unless --yes)')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;dlq;purge' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Every dead letter of the channel')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;dlq;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Dead letters of a channel, oldest first, with why they died')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'One dead letter in full: headers, body and the last error')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Put dead letters back in the queue, with their attempts reset')
            [CompletionResult]::new('purge', 'purge', [CompletionResultType]::ParameterValue, 'Delete dead letters for good (asks first unless --yes)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'wcon;dlq;help;list' {
            break
        }
        'wcon;dlq;help;show' {
            break
        }
        'wcon;dlq;help;replay' {
            break
        }
        'wcon;dlq;help;purge' {
            break
        }
        'wcon;dlq;help;help' {
            break
        }
        'wcon;init' {
            [CompletionResult]::new('--role', '--role', [CompletionResultType]::ParameterName, 'What to set up')
            [CompletionResult]::new('--provider', '--provider', [CompletionResultType]::ParameterName, 'Receiver: whose signatures to check')
            [CompletionResult]::new('--webhook-id', '--webhook-id', [CompletionResultType]::ParameterName, 'Receiver: the webhook id (senders post to /webhook/ID) [default: the provider''s name]')
            [CompletionResult]::new('--channel', '--channel', [CompletionResultType]::ParameterName, 'The relay channel [default: the webhook id, or `default` for a connector]')
            [CompletionResult]::new('--hmac-secret', '--hmac-secret', [CompletionResultType]::ParameterName, 'Receiver: the signing secret of the provider (Stripe''s whsec_…, GitHub''s or Shopify''s webhook secret) [default: a generated one, printed once]')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Receiver: the channel token [default: a generated strong token, printed once]. Connector: the channel token [default: {$WCON_TOKEN}, read from the environment]')
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'Connector: deliver to an HTTP app, or through output modules')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Connector: URL of `wcon serve` [default: http://localhost:8000]')
            [CompletionResult]::new('--target', '--target', [CompletionResultType]::ParameterName, 'Connector: where webhooks go [default: http://localhost:3000/webhooks]')
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Directory to write the files in')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Overwrite existing files')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Take the default answer of every question not given by a flag')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Take the default answer of every question not given by a flag')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;send' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve` (or WCON_SERVER, or `server` of the profile)')
            [CompletionResult]::new('-d', '-d', [CompletionResultType]::ParameterName, 'The body: JSON text, @FILE to read a file, or @- for stdin (default: a small JSON test event)')
            [CompletionResult]::new('--data', '--data', [CompletionResultType]::ParameterName, 'The body: JSON text, @FILE to read a file, or @- for stdin (default: a small JSON test event)')
            [CompletionResult]::new('--hmac-secret', '--hmac-secret', [CompletionResultType]::ParameterName, 'Sign the body with this shared secret (prefer WCON_HMAC_SECRET: flags show in `ps`)')
            [CompletionResult]::new('--provider', '--provider', [CompletionResultType]::ParameterName, 'Whose signature scheme to use with --hmac-secret')
            [CompletionResult]::new('--content-type', '--content-type', [CompletionResultType]::ParameterName, 'Content-Type of the body')
            [CompletionResult]::new('-H', '-H ', [CompletionResultType]::ParameterName, 'An extra request header, `Name: value`; repeatable')
            [CompletionResult]::new('--header', '--header', [CompletionResultType]::ParameterName, 'An extra request header, `Name: value`; repeatable')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print `{"status": …, "body": …}` instead of text')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;dash' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'URL of `wcon serve`, e.g. https://hooks.example.com')
            [CompletionResult]::new('--admin-token', '--admin-token', [CompletionResultType]::ParameterName, 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN')
            [CompletionResult]::new('--interval', '--interval', [CompletionResultType]::ParameterName, 'How often to poll the server: `1s`, `500ms`, `2m` or plain seconds')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the server''s JSON instead of a table')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;completions' {
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format: `text` for people, `json` for one JSON object per line (log shippers)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'wcon;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the public receiver: accept webhooks, store them durably, stream them to connectors')
            [CompletionResult]::new('tunnel', 'tunnel', [CompletionResultType]::ParameterValue, 'Connect out to a receiver and deliver channels'' webhooks to local apps or output modules')
            [CompletionResult]::new('channels', 'channels', [CompletionResultType]::ParameterValue, 'Inspect relay channels of a running server (admin API)')
            [CompletionResult]::new('dlq', 'dlq', [CompletionResultType]::ParameterValue, 'List, show, replay and purge dead letters of a running server (admin API)')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Write a starting config (receiver or connector) from templates, with a strong token')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send a test webhook, signed like Stripe, GitHub or Shopify, and print the answer')
            [CompletionResult]::new('dash', 'dash', [CompletionResultType]::ParameterValue, 'Watch a running server live: channels, connectors, messages, dead letters (terminal UI)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script (bash, zsh, fish, powershell, elvish)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'wcon;help;serve' {
            break
        }
        'wcon;help;tunnel' {
            break
        }
        'wcon;help;channels' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Every channel with its webhooks, connected clients and limits')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'One channel: settings, counts and connected clients')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)')
            [CompletionResult]::new('disconnect', 'disconnect', [CompletionResultType]::ParameterValue, 'Close one connection of a channel; its in-flight messages go back to the queue')
            [CompletionResult]::new('rotate-token', 'rotate-token', [CompletionResultType]::ParameterValue, 'Replace a channel''s token; prints the new one once. The old token keeps working for --grace, then connections still using it are closed and it is refused')
            break
        }
        'wcon;help;channels;list' {
            break
        }
        'wcon;help;channels;show' {
            break
        }
        'wcon;help;channels;stats' {
            break
        }
        'wcon;help;channels;disconnect' {
            break
        }
        'wcon;help;channels;rotate-token' {
            break
        }
        'wcon;help;dlq' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Dead letters of a channel, oldest first, with why they died')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'One dead letter in full: headers, body and the last error')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Put dead letters back in the queue, with their attempts reset')
            [CompletionResult]::new('purge', 'purge', [CompletionResultType]::ParameterValue, 'Delete dead letters for good (asks first unless --yes)')
            break
        }
        'wcon;help;dlq;list' {
            break
        }
        'wcon;help;dlq;show' {
            break
        }
        'wcon;help;dlq;replay' {
            break
        }
        'wcon;help;dlq;purge' {
            break
        }
        'wcon;help;init' {
            break
        }
        'wcon;help;send' {
            break
        }
        'wcon;help;dash' {
            break
        }
        'wcon;help;completions' {
            break
        }
        'wcon;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
