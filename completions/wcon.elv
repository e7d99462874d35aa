
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
            cand --log-format 'Log format'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run the public receiver: accept webhooks, store them durably, stream them to connectors'
            cand tunnel 'Connect out to a receiver and deliver a channel''s webhooks to a local app'
            cand channels 'Inspect relay channels of a running server (admin API)'
            cand dlq 'List, show, replay and purge dead letters of a running server (admin API)'
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
            cand --redis-url 'Redis of `--buffer redis`: redis://[user:password@]host:port[/db] or redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]'
            cand --redis-prefix 'Prefix of the Redis keys of `--buffer redis` (deployments sharing one Redis need their own)'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;tunnel'= {
            cand --to 'Where to deliver: a port, host:port, or an http(s) URL with a path'
            cand --server 'The receiver''s base URL'
            cand --token 'The channel token (prefer WCON_TOKEN or CONNECTOR_TOKEN: flags are visible in `ps`)'
            cand -c 'connector.json to read'
            cand --config 'connector.json to read'
            cand --connector-id 'Name sent as X-Connector-ID'
            cand --webhooks 'Module mode: deliver to the output modules of this webhooks.json instead of HTTP'
            cand --connections 'Module mode: the connections.json the modules use'
            cand --concurrency 'Deliveries running at once (max_concurrent_requests)'
            cand --protocol 'Streaming transport: websocket (default), sse, long_poll, or auto (WebSocket, falling back to SSE, then long-poll, and going back up later). CONNECTOR_PROTOCOL in the env'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;channels'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format'
            cand --json 'Print the server''s JSON instead of a table'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'Every channel with its webhooks, connected clients and limits'
            cand show 'One channel: settings, counts and connected clients'
            cand stats 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)'
            cand disconnect 'Close one connection of a channel; its in-flight messages go back to the queue'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'wcon;channels;list'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format'
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
            cand --log-format 'Log format'
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
            cand --log-format 'Log format'
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
            cand --log-format 'Log format'
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
        &'wcon;channels;help;help'= {
        }
        &'wcon;dlq'= {
            cand --server 'URL of `wcon serve`, e.g. https://hooks.example.com'
            cand --admin-token 'The server''s WEBHOOK_CONNECT_ADMIN_TOKEN'
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format'
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
            cand --log-format 'Log format'
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
            cand --log-format 'Log format'
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
            cand --log-format 'Log format'
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
            cand --log-format 'Log format'
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
        &'wcon;completions'= {
            cand --log-level 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set'
            cand --log-format 'Log format'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'wcon;help'= {
            cand serve 'Run the public receiver: accept webhooks, store them durably, stream them to connectors'
            cand tunnel 'Connect out to a receiver and deliver a channel''s webhooks to a local app'
            cand channels 'Inspect relay channels of a running server (admin API)'
            cand dlq 'List, show, replay and purge dead letters of a running server (admin API)'
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
        }
        &'wcon;help;channels;list'= {
        }
        &'wcon;help;channels;show'= {
        }
        &'wcon;help;channels;stats'= {
        }
        &'wcon;help;channels;disconnect'= {
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
        &'wcon;help;completions'= {
        }
        &'wcon;help;help'= {
        }
    ]
    $completions[$command]
}
