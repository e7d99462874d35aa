# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_wcon_global_optspecs
    string join \n log-level= log-format= h/help V/version
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
complete -c wcon -n "__fish_wcon_needs_command" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_needs_command" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "serve" -d 'Run the public receiver: accept webhooks, store them durably, stream them to connectors'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "tunnel" -d 'Connect out to a receiver and deliver a channel\'s webhooks to a local app'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "channels" -d 'Inspect relay channels of a running server (admin API)'
complete -c wcon -n "__fish_wcon_needs_command" -f -a "dlq" -d 'List, show, replay and purge dead letters of a running server (admin API)'
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
rabbitmq\t'RabbitMQ queues'"
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l redis-url -d 'Redis of `--buffer redis`: redis://[user:password@]host:port[/db] or redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l redis-prefix -d 'Prefix of the Redis keys of `--buffer redis` (deployments sharing one Redis need their own)' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand serve" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand serve" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l to -d 'Where to deliver: a port, host:port, or an http(s) URL with a path' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l server -d 'The receiver\'s base URL' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l token -d 'The channel token (prefer WCON_TOKEN or CONNECTOR_TOKEN: flags are visible in `ps`)' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -s c -l config -d 'connector.json to read' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l connector-id -d 'Name sent as X-Connector-ID' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l webhooks -d 'Module mode: deliver to the output modules of this webhooks.json instead of HTTP' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l connections -d 'Module mode: the connections.json the modules use' -r -F
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l concurrency -d 'Deliveries running at once (max_concurrent_requests)' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l protocol -d 'Streaming transport: websocket (default), sse, long_poll, or auto (WebSocket, falling back to SSE, then long-poll, and going back up later). CONNECTOR_PROTOCOL in the env' -r -f -a "websocket\t''
sse\t''
long_poll\t''
auto\t''"
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand tunnel" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -f -a "list" -d 'Every channel with its webhooks, connected clients and limits'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -f -a "show" -d 'One channel: settings, counts and connected clients'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -f -a "stats" -d 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -f -a "disconnect" -d 'Close one connection of a channel; its in-flight messages go back to the queue'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and not __fish_seen_subcommand_from list show stats disconnect help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from stats" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from disconnect" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every channel with its webhooks, connected clients and limits'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "show" -d 'One channel: settings, counts and connected clients'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "stats" -d 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "disconnect" -d 'Close one connection of a channel; its in-flight messages go back to the queue'
complete -c wcon -n "__fish_wcon_using_subcommand channels; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and not __fish_seen_subcommand_from list show replay purge help" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
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
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l since -d 'Those dead-lettered at or after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z)' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l until -d 'Those dead-lettered before this time (RFC 3339)' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l all -d 'Every dead letter of the channel (asks first unless --yes)'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -s y -l yes -d 'Do not ask for confirmation'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -l json -d 'Print the server\'s JSON instead of a table'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from replay" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l server -d 'URL of `wcon serve`, e.g. https://hooks.example.com' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l admin-token -d 'The server\'s WEBHOOK_CONNECT_ADMIN_TOKEN' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand dlq; and __fish_seen_subcommand_from purge" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
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
complete -c wcon -n "__fish_wcon_using_subcommand completions" -l log-level -d 'Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter; RUST_LOG wins when set' -r
complete -c wcon -n "__fish_wcon_using_subcommand completions" -l log-format -d 'Log format' -r -f -a "text\t'For people'
json\t'One JSON object per line'"
complete -c wcon -n "__fish_wcon_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wcon -n "__fish_wcon_using_subcommand completions" -s V -l version -d 'Print version'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq completions help" -f -a "serve" -d 'Run the public receiver: accept webhooks, store them durably, stream them to connectors'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq completions help" -f -a "tunnel" -d 'Connect out to a receiver and deliver a channel\'s webhooks to a local app'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq completions help" -f -a "channels" -d 'Inspect relay channels of a running server (admin API)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq completions help" -f -a "dlq" -d 'List, show, replay and purge dead letters of a running server (admin API)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq completions help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, powershell, elvish)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and not __fish_seen_subcommand_from serve tunnel channels dlq completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from channels" -f -a "list" -d 'Every channel with its webhooks, connected clients and limits'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from channels" -f -a "show" -d 'One channel: settings, counts and connected clients'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from channels" -f -a "stats" -d 'Counts of one channel (queued, in flight, delivered, expired, dead-lettered)'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from channels" -f -a "disconnect" -d 'Close one connection of a channel; its in-flight messages go back to the queue'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from dlq" -f -a "list" -d 'Dead letters of a channel, oldest first, with why they died'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from dlq" -f -a "show" -d 'One dead letter in full: headers, body and the last error'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from dlq" -f -a "replay" -d 'Put dead letters back in the queue, with their attempts reset'
complete -c wcon -n "__fish_wcon_using_subcommand help; and __fish_seen_subcommand_from dlq" -f -a "purge" -d 'Delete dead letters for good (asks first unless --yes)'
