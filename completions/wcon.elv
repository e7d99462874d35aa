
use builtin;
use str;

set edit:completion:arg-completer[wcon] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'wcon'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'wcon'= {
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run the public receiver: accept webhooks, store them durably, stream them to connectors'
            cand tunnel 'Connect out to a receiver and deliver channels'' webhooks to local apps or output modules'
            cand channels 'Inspect relay channels of a running server (admin API)'
            cand dlq 'List, show, replay and purge dead letters of a running server (admin API)'
            cand init 'Write a starting config (receiver or connector) from templates, with a strong token'
            cand send 'Send a test webhook, signed like Stripe, GitHub or Shopify, and print the answer'
            cand dash 'Watch a running server live: channels, connectors, messages, dead letters (terminal UI)'
            cand completions 'Print a shell completion script (bash, zsh, fish, powershell, elvish)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'wcon;serve'= {
            cand --listen 'Address to listen on'
            cand --config-dir 'Directory holding webhooks.json and connections.json'
            cand --webhooks 'webhooks.json to read (default: DIR/webhooks.json)'
            cand --connections 'connections.json to read (default: DIR/connections.json, optional)'
            cand --data-dir 'Where the embedded buffer keeps its data (default: the platform data directory)'
            cand --max-body-bytes 'Body limit in bytes of webhooks that set no `max_body_bytes`'
            cand --cors-origin 'Browser origin allowed to call the API (CORS), e.g. https://app.example.com; repeatable. Without one, CORS is off. `*` is refused'
            cand --buffer 'Buffer backend'
            cand --tls-cert 'PEM certificate chain: serve HTTPS and WSS (needs --tls-key). Reloaded when the file changes or on SIGHUP, without dropping connections'
            cand --tls-key 'PEM private key of --tls-cert'
            cand --tls-client-ca 'PEM CA certificates that connectors'' client certificates must chain to (mutual TLS). The handshake asks for a client certificate but does not require one (webhook senders have none); channels with `require_client_cert` refuse connectors without one. Reloaded with --tls-cert'
            cand --admin-listen 'Serve the admin API only on this address (plain HTTP; keep it private, e.g. 127.0.0.1:9000), not on --listen'
            cand --redis-url 'Redis of `--buffer redis`: redis://[user:password@]host:port[/db] or redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]'
            cand --redis-prefix 'Prefix of the Redis keys of `--buffer redis` (deployments sharing one Redis need their own)'
            cand --rabbitmq-url 'RabbitMQ of `--buffer rabbitmq`: amqp://user:password@host:port/vhost (the default vhost `/` is `%2f`)'
            cand --rabbitmq-prefix 'Prefix of the queue names of `--buffer rabbitmq` (deployments sharing one RabbitMQ need their own)'
            cand --rabbitmq-queue-type 'Queue type of `--buffer rabbitmq`: quorum (replicated) or classic'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --check 'Validate webhooks.json and connections.json, reach every connection once, print one line per item and exit (0 when all pass, 1 otherwise) without serving'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;tunnel'= {
            cand --to 'Where to deliver: a port, host:port, or an http(s) URL with a path'
            cand --route 'Stream CHANNEL to TARGET; repeat for several channels in one process. The channel token is --token (WCON_TOKEN) unless given as CHANNEL:TOKEN=TARGET (visible in `ps`: prefer `$VAR` from the shell''s environment or connector.json with `{$VAR}`)'
            cand --server 'The receiver''s base URL'
            cand --token 'The channel token (prefer WCON_TOKEN or CONNECTOR_TOKEN: flags are visible in `ps`)'
            cand -c 'connector.json to read (single- or multi-channel shape)'
            cand --config 'connector.json to read (single- or multi-channel shape)'
            cand --connector-id 'Name sent as X-Connector-ID'
            cand --webhooks 'Module mode: deliver to the output modules of this webhooks.json instead of HTTP'
            cand --connections 'Module mode: the connections.json the modules use'
            cand --concurrency 'Deliveries running at once, over every channel (`concurrency`, max_concurrent_requests)'
            cand --protocol 'Streaming transport: websocket (default), sse, long_poll, or auto (WebSocket, falling back to SSE, then long-poll, and going back up later). CONNECTOR_PROTOCOL in the env'
            cand --ca-cert 'Also trust the CA certificates of this PEM file for the server''s certificate (ca_cert_path); the public web roots stay trusted'
            cand --client-cert 'Present this PEM client certificate (chain) to the server on every transport, for channels with `require_client_cert` (client_cert_path, CONNECTOR_CLIENT_CERT_PATH)'
            cand --client-key 'The PEM private key of --client-cert (client_key_path, CONNECTOR_CLIENT_KEY_PATH)'
            cand --health-listen 'Serve GET /health and GET /metrics (Prometheus) on this address, e.g. 127.0.0.1:9090. Off by default'
            cand --health-down-after '/health answers 503 once a channel has been down this many seconds (default 60)'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --check 'Validate the settings, reach the server''s status endpoint with the token, every HTTP target and every connection once, print one line per item and exit (0 when all pass, 1 otherwise) without streaming'
            cand --insecure 'Do not verify the server''s TLS certificate (verify_ssl false). Unsafe: anyone on the path can read and change the stream; for tests with a self-signed certificate only'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;channels'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'Every channel with its webhooks, connected clients and limits'
            cand show 'One channel: settings, counts and connected clients'
            cand stats 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)'
            cand disconnect 'Close one connection of a channel; its in-flight messages go back to the queue'
            cand rotate-token 'Replace a channel''s token; prints the new one once. The old token keeps working for --grace, then connections still using it are closed and it is refused'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'wcon;channels;list'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;channels;show'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;channels;stats'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;channels;disconnect'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;channels;rotate-token'= {
            cand --grace 'How long the old token stays valid, e.g. 1h, 30m, 90s, 0 (at most 30 days)'
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --save 'Also store the new token in the profile''s config.toml (channel_tokens)'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;channels;help'= {
            cand list 'Every channel with its webhooks, connected clients and limits'
            cand show 'One channel: settings, counts and connected clients'
            cand stats 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)'
            cand disconnect 'Close one connection of a channel; its in-flight messages go back to the queue'
            cand rotate-token 'Replace a channel''s token; prints the new one once. The old token keeps working for --grace, then connections still using it are closed and it is refused'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'wcon;channels;help;list'= {
        }
        &'wcon;channels;help;show'= {
        }
        &'wcon;channels;help;stats'= {
        }
        &'wcon;channels;help;disconnect'= {
        }
        &'wcon;channels;help;rotate-token'= {
        }
        &'wcon;channels;help;help'= {
        }
        &'wcon;dlq'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'Dead letters of a channel, oldest first, with why they died'
            cand show 'One dead letter in full: headers, body and the last error'
            cand replay 'Put dead letters back in the queue, with their attempts reset'
            cand purge 'Delete dead letters for good (asks first unless --yes)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'wcon;dlq;list'= {
            cand --limit 'At most this many'
            cand --offset 'Skip this many first'
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;dlq;show'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;dlq;replay'= {
            cand --since 'Those dead-lettered at or after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z)'
            cand --until 'Those dead-lettered before this time (RFC 3339)'
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --all 'Every dead letter of the channel (asks first unless --yes)'
            cand -y 'Do not ask for confirmation'
            cand --yes 'Do not ask for confirmation'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;dlq;purge'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --all 'Every dead letter of the channel'
            cand -y 'Do not ask for confirmation'
            cand --yes 'Do not ask for confirmation'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;dlq;help'= {
            cand list 'Dead letters of a channel, oldest first, with why they died'
            cand show 'One dead letter in full: headers, body and the last error'
            cand replay 'Put dead letters back in the queue, with their attempts reset'
            cand purge 'Delete dead letters for good (asks first unless --yes)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'wcon;dlq;help;list'= {
        }
        &'wcon;dlq;help;show'= {
        }
        &'wcon;dlq;help;replay'= {
        }
        &'wcon;dlq;help;purge'= {
        }
        &'wcon;dlq;help;help'= {
        }
        &'wcon;init'= {
            cand --role 'What to set up'
            cand --provider 'Receiver: whose signatures to check'
            cand --webhook-id 'Receiver: the webhook id (senders post to /webhook/ID) [default: the provider''s name]'
            cand --channel 'The relay channel [default: the webhook id, or `default` for a connector]'
            cand --hmac-secret 'Receiver: the signing secret of the provider (Stripe''s whsec_…, GitHub''s or Shopify''s webhook secret) [default: a generated one, printed once]'
            cand --token 'Receiver: the channel token [default: a generated strong token, printed once]. Connector: the channel token [default: {$WCON_TOKEN}, read from the environment]'
            cand --mode 'Connector: deliver to an HTTP app, or through output modules'
            cand --server 'Connector: URL of `wcon serve` [default: http://localhost:8000]'
            cand --target 'Connector: where webhooks go [default: http://localhost:3000/webhooks]'
            cand --dir 'Directory to write the files in'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --force 'Overwrite existing files'
            cand -y 'Take the default answer of every question not given by a flag'
            cand --yes 'Take the default answer of every question not given by a flag'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;send'= {
            cand --server 'URL of `wcon serve` (or WCON_SERVER, or `server` of the profile)'
            cand -d 'The body: JSON text, @FILE to read a file, or @- for stdin (default: a small JSON test event)'
            cand --data 'The body: JSON text, @FILE to read a file, or @- for stdin (default: a small JSON test event)'
            cand --hmac-secret 'Sign the body with this shared secret (prefer WCON_HMAC_SECRET: flags show in `ps`)'
            cand --provider 'Whose signature scheme to use with --hmac-secret'
            cand --content-type 'Content-Type of the body'
            cand -H 'An extra request header, `Name: value`; repeatable'
            cand --header 'An extra request header, `Name: value`; repeatable'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --json 'Print `{"status": …, "body": …}` instead of text'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;dash'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --interval 'How often to poll the server: `1s`, `500ms`, `2m` or plain seconds'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;completions'= {
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format: `text` for people, `json` for one JSON object per line (log shippers)'
            cand --profile 'Profile of config.toml (in the platform config dir, or $WCON_CONFIG_DIR) giving --server, --admin-token and saved channel tokens; flags and env vars win over it'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;help'= {
            cand serve 'Run the public receiver: accept webhooks, store them durably, stream them to connectors'
            cand tunnel 'Connect out to a receiver and deliver channels'' webhooks to local apps or output modules'
            cand channels 'Inspect relay channels of a running server (admin API)'
            cand dlq 'List, show, replay and purge dead letters of a running server (admin API)'
            cand init 'Write a starting config (receiver or connector) from templates, with a strong token'
            cand send 'Send a test webhook, signed like Stripe, GitHub or Shopify, and print the answer'
            cand dash 'Watch a running server live: channels, connectors, messages, dead letters (terminal UI)'
            cand completions 'Print a shell completion script (bash, zsh, fish, powershell, elvish)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'wcon;help;serve'= {
        }
        &'wcon;help;tunnel'= {
        }
        &'wcon;help;channels'= {
            cand list 'Every channel with its webhooks, connected clients and limits'
            cand show 'One channel: settings, counts and connected clients'
            cand stats 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)'
            cand disconnect 'Close one connection of a channel; its in-flight messages go back to the queue'
            cand rotate-token 'Replace a channel''s token; prints the new one once. The old token keeps working for --grace, then connections still using it are closed and it is refused'
        }
        &'wcon;help;channels;list'= {
        }
        &'wcon;help;channels;show'= {
        }
        &'wcon;help;channels;stats'= {
        }
        &'wcon;help;channels;disconnect'= {
        }
        &'wcon;help;channels;rotate-token'= {
        }
        &'wcon;help;dlq'= {
            cand list 'Dead letters of a channel, oldest first, with why they died'
            cand show 'One dead letter in full: headers, body and the last error'
            cand replay 'Put dead letters back in the queue, with their attempts reset'
            cand purge 'Delete dead letters for good (asks first unless --yes)'
        }
        &'wcon;help;dlq;list'= {
        }
        &'wcon;help;dlq;show'= {
        }
        &'wcon;help;dlq;replay'= {
        }
        &'wcon;help;dlq;purge'= {
        }
        &'wcon;help;init'= {
        }
        &'wcon;help;send'= {
        }
        &'wcon;help;dash'= {
        }
        &'wcon;help;completions'= {
        }
        &'wcon;help;help'= {
        }
    ]
    $completions[$command]
}
