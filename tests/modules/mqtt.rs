//! The mqtt module against the real Mosquitto of `scripts/services.sh`, read by a real
//! subscriber.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use serde_json::{Value, json};
use wcon::modules::{ModuleError, NetworkPolicy};

use crate::support::{closed_port, delivery, module, service, try_module, unique};

fn broker() -> (String, u16) {
    let address = service("WCON_TEST_MQTT");
    let (host, port) = address
        .rsplit_once(':')
        .expect("WCON_TEST_MQTT is host:port");
    (host.to_owned(), port.parse().unwrap())
}

fn entry() -> Value {
    let (host, port) = broker();
    json!({"type": "mqtt", "host": host, "port": port, "client_id": "wcon-test"})
}

/// A subscriber on `filter`, subscribed (SUBACK received) when this returns.
async fn subscriber(filter: &str) -> (AsyncClient, EventLoop) {
    let (host, port) = broker();
    let options = MqttOptions::new(unique("wcon-test-sub"), host, port);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client.subscribe(filter, QoS::ExactlyOnce).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
                break;
            }
        }
    })
    .await
    .expect("SUBACK within 10 s");
    (client, eventloop)
}

/// The next `count` messages the subscriber receives.
async fn receive(eventloop: &mut EventLoop, count: usize) -> Vec<Publish> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while got.len() < count {
            if let Event::Incoming(Packet::Publish(p)) = eventloop.poll().await.unwrap() {
                got.push(p);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{count} messages within 10 s, got {}", got.len()));
    got
}

#[tokio::test]
async fn mqtt_publishes_at_qos_0_1_and_2() {
    let prefix = unique("wcon-test");
    let (_sub, mut events) = subscriber(&format!("{prefix}/#")).await;
    for qos in [0, 1, 2] {
        let module = module(
            "mqtt",
            json!({"topic": format!("events/q{qos}"), "topic_prefix": prefix, "qos": qos}),
            Some(entry()),
        );
        module
            .deliver(&delivery(&json!({"qos": qos})))
            .await
            .unwrap();
    }
    let mut got = receive(&mut events, 3).await;
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    for (qos, message) in got.iter().enumerate() {
        assert_eq!(message.topic, format!("{prefix}/events/q{qos}"));
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body, json!({"qos": qos}));
        assert!(!message.retain);
    }
    assert_eq!(got[0].qos, QoS::AtMostOnce);
    assert_eq!(got[1].qos, QoS::AtLeastOnce);
    assert_eq!(got[2].qos, QoS::ExactlyOnce);
}

#[tokio::test]
async fn mqtt_retained_messages_reach_later_subscribers() {
    let topic = format!("{}/state", unique("wcon-test"));
    let module = module(
        "mqtt",
        json!({"topic": topic, "retained": true, "qos": 1}),
        Some(entry()),
    );
    module
        .deliver(&delivery(&json!({"on": true})))
        .await
        .unwrap();

    // Subscribing only now: the broker hands over the retained message.
    let (sub, mut events) = subscriber(&topic).await;
    let got = receive(&mut events, 1).await;
    assert!(got[0].retain, "delivered as a retained message");
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].payload).unwrap(),
        json!({"on": true})
    );
    // Clear the retained message.
    sub.publish(&topic, QoS::AtLeastOnce, true, Vec::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn mqtt_tasmota_and_shelly_shapes() {
    let prefix = unique("wcon-test");
    let (_sub, mut events) = subscriber(&format!("{prefix}/#")).await;
    let tasmota = module(
        "mqtt",
        json!({
            "tasmota_format": true, "tasmota_type": "cmnd", "device_name": "plug1",
            "command": "POWER", "topic_prefix": prefix
        }),
        Some(entry()),
    );
    tasmota.deliver(&delivery(&json!("ON"))).await.unwrap();
    let got = receive(&mut events, 1).await;
    assert_eq!(got[0].topic, format!("{prefix}/cmnd/plug1/POWER"));
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].payload).unwrap(),
        json!({"data": "ON"})
    );

    let shelly = module(
        "mqtt",
        json!({"topic": format!("{prefix}/shelly/rpc"), "shelly_gen2_format": true, "device_id": "shelly-1"}),
        Some(entry()),
    );
    shelly
        .deliver(&delivery(&json!({"on": true})))
        .await
        .unwrap();
    let got = receive(&mut events, 1).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].payload).unwrap(),
        json!({"id": "shelly-1", "source": "webhook", "params": {"on": true}})
    );
}

#[tokio::test]
async fn mqtt_config_errors_and_unreachable_broker() {
    let err = try_module(
        "mqtt",
        json!({"topic": "a", "qos_level": 1}),
        Some(entry()),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("qos_level"), "{err}");
    let err = try_module(
        "mqtt",
        json!({"topic": "a/#"}),
        Some(entry()),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("wildcards"), "{err}");
    let err = try_module(
        "mqtt",
        json!({"topic": "a", "qos": 3}),
        Some(entry()),
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("qos"), "{err}");

    let entry = json!({"type": "mqtt", "host": "127.0.0.1", "port": closed_port(), "username": "u", "password": "s3cr3t-pw"});
    let module = module("mqtt", json!({"topic": "a"}), Some(entry));
    let err = module
        .deliver(&delivery(&json!({"x": 1})))
        .await
        .unwrap_err();
    assert!(matches!(err, ModuleError::Retryable(_)), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}
