# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_wcon_global_optspecs
    string join \n log-level= log-format= profile= h/help V/version
end

function __fish_wcon_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_wcon_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_wcon_using_subcommand
    set -l cmd (__fish_wcon_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c wcon -n "__fish_wcon_needs_command" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_needs_command" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_needs_command" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_needs_command" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "serve" -d 'Run the public receiver: accept webhooks, store them durably, stream them to connectors'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "tunnel" -d 'Connect out to a receiver and deliver channels\' webhooks to local apps or output modules'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "channels" -d 'Inspect relay channels of a running server (admin API)'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "dlq" -d 'List, show, replay and purge dead letters of a running server (admin API)'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "init" -d 'Write a starting config (receiver or connector) from templates, with a strong token'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "send" -d 'Send a test webhook, signed like Stripe, GitHub or Shopify, and print the answer'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "dash" -d 'Watch a running server live: channels, connectors, messages, dead letters (terminal UI)'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, powershell, elvish)'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l listen -d 'Address to listen on' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l config-dir -d 'Directory holding webhooks.json and connections.json' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l webhooks -d 'webhooks.json to read (default: DIR/webhooks.json)' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l connections -d 'connections.json to read (default: DIR/connections.json, optional)' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l data-dir -d 'Where the embedded buffer keeps its data (default: the platform data directory)' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l max-body-bytes -d 'Body limit in bytes of webhooks that set no `max_body_bytes`' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l cors-origin -d 'Browser origin allowed to call the API (CORS), e.g. https://app.example.com; repeatable. Without one, CORS is off. `*` is refused' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l buffer -d 'Buffer backend' -r -f -a "embedded\t'A durable store under the data directory; no server needed'
redis\t'Redis Streams (several instances)'
rabbitmq\t'RabbitMQ queues (several instances)'"
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l tls-cert -d 'PEM certificate chain: serve HTTPS and WSS (needs --tls-key). Reloaded when the file changes or on SIGHUP, without dropping connections' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l tls-key -d 'PEM private key of --tls-cert' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l tls-client-ca -d 'PEM CA certificates that connectors\' client certificates must chain to (mutual TLS). The handshake asks for a client certificate but does not require one (webhook senders have none); channels with `require_client_cert` refuse connectors without one. Reloaded with --tls-cert' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l admin-listen -d 'Serve the admin API only on this address (plain HTTP; keep it private, e.g. 127.0.0.1:9000), not on --listen' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l redis-url -d 'Redis of `--buffer redis`: redis://[user:password@]host:port[/db] or redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l redis-prefix -d 'Prefix of the Redis keys of `--buffer redis` (deployments sharing one Redis need their own)' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l rabbitmq-url -d 'RabbitMQ of `--buffer rabbitmq`: amqp://user:password@host:port/vhost (the default vhost `/` is `%2f`)' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l rabbitmq-prefix -d 'Prefix of the queue names of `--buffer rabbitmq` (deployments sharing one RabbitMQ need their own)' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l rabbitmq-queue-type -d 'Queue type of `--buffer rabbitmq`: quorum (replicated) or classic' -r -f -a "quorum\t'Replicated quorum queues'
classic\t'Classic queues'"
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l check -d 'Validate webhooks.json and connections.json, reach every connection once, print one line per item and exit (0 when all pass, 1 otherwise) without serving'
complete -c wcon -n "__fish_wcon_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand serve" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l to -d 'Where to deliver: a port, host:port, or an http(s) URL with a path' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l route -d 'Stream CHANNEL to TARGET; repeat for several channels in one process. The channel token is --token (WCON_TOKEN) unless given as CHANNEL:TOKEN=TARGET (visible in `ps`: prefer `$VAR` from the shell\'s environment or connector.json with `{$VAR}`)' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l server -d 'The receiver\'s base URL' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l token -d 'The channel token (prefer WCON_TOKEN or CONNECTOR_TOKEN: flags are visible in `ps`)' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -s c -l config -d 'connector.json to read (single- or multi-channel shape)' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l connector-id -d 'Name sent as X-Connector-ID' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l webhooks -d 'Module mode: deliver to the output modules of this webhooks.json instead of HTTP' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l connections -d 'Module mode: the connections.json the modules use' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l concurrency -d 'Deliveries running at once, over every channel (`concurrency`, max_concurrent_requests)' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l protocol -d 'Streaming transport: websocket (default), sse, long_poll, or auto (WebSocket, falling back to SSE, then long-poll, and going back up later). CONNECTOR_PROTOCOL in the env' -r -f -a "websocket\t''
sse\t''
long_poll\t''
auto\t''"
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l ca-cert -d 'Also trust the CA certificates of this PEM file for the server\'s certificate (ca_cert_path); the public web roots stay trusted' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l client-cert -d 'Present this PEM client certificate (chain) to the server on every transport, for channels with `require_client_cert` (client_cert_path, CONNECTOR_CLIENT_CERT_PATH)' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l client-key -d 'The PEM private key of --client-cert (client_key_path, CONNECTOR_CLIENT_KEY_PATH)' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l health-listen -d 'Serve GET /health and GET /metrics (Prometheus) on this address, e.g. 127.0.0.1:9090. Off by default' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l health-down-after -d '/health answers 503 once a channel has been down this many seconds (default 60)' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l check -d 'Validate the settings, reach the server\'s status endpoint with the token, every HTTP target and every connection once, print one line per item and exit (0 when all pass, 1 otherwise) without streaming'
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l insecure -d 'Do not verify the server\'s TLS certificate (verify_ssl false). Unsafe: anyone on the path can read and change the stream; for tests with a self-signed certificate only'
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -f -a "list" -d 'Every channel with its webhooks, connected clients and limits'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -f -a "show" -d 'One channel: settings, counts and connected clients'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -f -a "stats" -d 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -f -a "disconnect" -d 'Close one connection of a channel; its in-flight messages go back to the queue'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -f -a "rotate-token" -d 'Replace a channel\'s token; prints the new one once. The old token keeps working for --grace, then connections still using it are closed and it is refused'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect rotate-token help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from rotate-token" -l grace -d 'How long the old token stays valid, e.g. 1h, 30m, 90s, 0 (at most 30 days)' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from rotate-token" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from rotate-token" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from rotate-token" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from rotate-token" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from rotate-token" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from rotate-token" -l save -d 'Also store the new token in the profile\'s config.toml (channel_tokens)'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from rotate-token" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from rotate-token" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from rotate-token" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every channel with its webhooks, connected clients and limits'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "show" -d 'One channel: settings, counts and connected clients'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "stats" -d 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "disconnect" -d 'Close one connection of a channel; its in-flight messages go back to the queue'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "rotate-token" -d 'Replace a channel\'s token; prints the new one once. The old token keeps working for --grace, then connections still using it are closed and it is refused'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -f -a "list" -d 'Dead letters of a channel, oldest first, with why they died'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -f -a "show" -d 'One dead letter in full: headers, body and the last error'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -f -a "replay" -d 'Put dead letters back in the queue, with their attempts reset'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -f -a "purge" -d 'Delete dead letters for good (asks first unless --yes)'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -l limit -d 'At most this many' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -l offset -d 'Skip this many first' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l since -d 'Those dead-lettered at or after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z)' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l until -d 'Those dead-lettered before this time (RFC 3339)' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l all -d 'Every dead letter of the channel (asks first unless --yes)'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -s y -l yes -d 'Do not ask for confirmation'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l all -d 'Every dead letter of the channel'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -s y -l yes -d 'Do not ask for confirmation'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from help" -f -a "list" -d 'Dead letters of a channel, oldest first, with why they died'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from help" -f -a "show" -d 'One dead letter in full: headers, body and the last error'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from help" -f -a "replay" -d 'Put dead letters back in the queue, with their attempts reset'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from help" -f -a "purge" -d 'Delete dead letters for good (asks first unless --yes)'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wcon -n "__fish_wcon_using_subcommand init" -l role -d 'What to set up' -r -f -a "receiver\t'The public side: webhooks.json for `wcon serve`'
connector\t'The private side: connector.json for `wcon tunnel --config`'"
complete -c wcon -n "__fish_wcon_using_subcommand init" -l provider -d 'Receiver: whose signatures to check' -r -f -a "stripe\t'Stripe-Signature (t=…,v1=…), 5 minutes tolerance'
github\t'X-Hub-Signature-256 (sha256=…)'
shopify\t'X-Shopify-Hmac-Sha256 (base64)'
hmac\t'X-HMAC-Signature: hex HMAC-SHA256 of the body'"
complete -c wcon -n "__fish_wcon_using_subcommand init" -l webhook-id -d 'Receiver: the webhook id (senders post to /webhook/ID) [default: the provider\'s name]' -r
complete -c wcon -n "__fish_wcon_using_subcommand init" -l channel -d 'The relay channel [default: the webhook id, or `default` for a connector]' -r
complete -c wcon -n "__fish_wcon_using_subcommand init" -l hmac-secret -d 'Receiver: the signing secret of the provider (Stripe\'s whsec_…, GitHub\'s or Shopify\'s webhook secret) [default: a generated one, printed once]' -r
complete -c wcon -n "__fish_wcon_using_subcommand init" -l token -d 'Receiver: the channel token [default: a generated strong token, printed once]. Connector: the channel token [default: {$WCON_TOKEN}, read from the environment]' -r
complete -c wcon -n "__fish_wcon_using_subcommand init" -l mode -d 'Connector: deliver to an HTTP app, or through output modules' -r -f -a "http\t'POST each webhook to a local HTTP app'
module\t'Run output modules (webhooks.json + connections.json next to connector.json)'"
complete -c wcon -n "__fish_wcon_using_subcommand init" -l server -d 'Connector: URL of `wcon serve` [default: http://localhost:8000]' -r
complete -c wcon -n "__fish_wcon_using_subcommand init" -l target -d 'Connector: where webhooks go [default: http://localhost:3000/webhooks]' -r
complete -c wcon -n "__fish_wcon_using_subcommand init" -l dir -d 'Directory to write the files in' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand init" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand init" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand init" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand init" -l force -d 'Overwrite existing files'
complete -c wcon -n "__fish_wcon_using_subcommand init" -s y -l yes -d 'Take the default answer of every question not given by a flag'
complete -c wcon -n "__fish_wcon_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand init" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand send" -l server -d 'URL of `wcon serve` (or WCON_SERVER, or `server` of the profile)' -r
complete -c wcon -n "__fish_wcon_using_subcommand send" -s d -l data -d 'The body: JSON text, @FILE to read a file, or @- for stdin (default: a small JSON test event)' -r
complete -c wcon -n "__fish_wcon_using_subcommand send" -l hmac-secret -d 'Sign the body with this shared secret (prefer WCON_HMAC_SECRET: flags show in `ps`)' -r
complete -c wcon -n "__fish_wcon_using_subcommand send" -l provider -d 'Whose signature scheme to use with --hmac-secret' -r -f -a "plain\t'`X-HMAC-Signature: <hex HMAC-SHA256>` (the `plain` format)'
stripe\t'`Stripe-Signature: t=…,v1=…`'
github\t'`X-Hub-Signature-256: sha256=…`'
shopify\t'`X-Shopify-Hmac-Sha256: <base64>`'"
complete -c wcon -n "__fish_wcon_using_subcommand send" -l content-type -d 'Content-Type of the body' -r
complete -c wcon -n "__fish_wcon_using_subcommand send" -s H -l header -d 'An extra request header, `Name: value`; repeatable' -r
complete -c wcon -n "__fish_wcon_using_subcommand send" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand send" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand send" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand send" -l json -d 'Print `{"status": …, "body": …}` instead of text'
complete -c wcon -n "__fish_wcon_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand send" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand dash" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand dash" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand dash" -l interval -d 'How often to poll the server: `1s`, `500ms`, `2m` or plain seconds' -r
complete -c wcon -n "__fish_wcon_using_subcommand dash" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand dash" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand dash" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand dash" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand dash" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand dash" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand completions" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand completions" -l log-format -d 'Log format: `text` for people, `json` for one JSON object per line (log shippers)' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand completions" -l profile -d 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it' -r
complete -c wcon -n "__fish_wcon_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand completions" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq init send dash completions help" -f -a "serve" -d 'Run the public receiver: accept webhooks, store them durably, stream them to connectors'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq init send dash completions help" -f -a "tunnel" -d 'Connect out to a receiver and deliver channels\' webhooks to local apps or output modules'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq init send dash completions help" -f -a "channels" -d 'Inspect relay channels of a running server (admin API)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq init send dash completions help" -f -a "dlq" -d 'List, show, replay and purge dead letters of a running server (admin API)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq init send dash completions help" -f -a "init" -d 'Write a starting config (receiver or connector) from templates, with a strong token'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq init send dash completions help" -f -a "send" -d 'Send a test webhook, signed like Stripe, GitHub or Shopify, and print the answer'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq init send dash completions help" -f -a "dash" -d 'Watch a running server live: channels, connectors, messages, dead letters (terminal UI)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq init send dash completions help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, powershell, elvish)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq init send dash completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from channels" -f -a "list" -d 'Every channel with its webhooks, connected clients and limits'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from channels" -f -a "show" -d 'One channel: settings, counts and connected clients'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from channels" -f -a "stats" -d 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from channels" -f -a "disconnect" -d 'Close one connection of a channel; its in-flight messages go back to the queue'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from channels" -f -a "rotate-token" -d 'Replace a channel\'s token; prints the new one once. The old token keeps working for --grace, then connections still using it are closed and it is refused'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from dlq" -f -a "list" -d 'Dead letters of a channel, oldest first, with why they died'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from dlq" -f -a "show" -d 'One dead letter in full: headers, body and the last error'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from dlq" -f -a "replay" -d 'Put dead letters back in the queue, with their attempts reset'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from dlq" -f -a "purge" -d 'Delete dead letters for good (asks first unless --yes)'
