using System.Diagnostics.Metrics;
using VirtioSharp.VhostUser.Backend;

namespace VirtioSharp.VhostUser.Diagnostics;

/// <summary>
/// A <see cref="Meter"/> named <see cref="MeterName"/> for a <see cref="VhostUserServer"/>: observable instruments over
/// its <see cref="VhostCounters"/> (connections, reconnects, messages, errors by kind, kicks, polled rounds, interrupts sent and suppressed,
/// IOTLB hits/misses/updates/invalidations, resubmitted requests, config changes), read only when a listener collects,
/// so the rings' hot paths do nothing for them. Live with <c>dotnet-counters monitor -n virtio-sharp --counters
/// VirtioSharp.VhostUser</c>.
/// </summary>
public sealed class VhostUserMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VirtioSharp.VhostUser";

    private VhostUserMetrics(Meter meter) => Meter = meter;

    /// <summary>The meter the instruments belong to.</summary>
    public Meter Meter { get; }

    /// <summary>
    /// Publishes <paramref name="server"/>'s counters on a new meter (from <paramref name="factory"/> when given). With
    /// <paramref name="socket"/>, every measurement carries a <c>socket</c> tag with it, so that a daemon serving several
    /// sockets (one meter each, all named <see cref="MeterName"/>) shows them apart in dotnet-counters.
    /// </summary>
    public static VhostUserMetrics Create(VhostUserServer server, IMeterFactory? factory = null, string? socket = null)
    {
        ArgumentNullException.ThrowIfNull(server);
        var meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        VhostCounters Now() => VhostCounters.Read(server);
        var socketTag = socket is null ? Array.Empty<KeyValuePair<string, object?>>() : [new("socket", socket)];
        Measurement<long> One(long value) => new(value, socketTag);
        Measurement<long> Tagged(long value, string key, string tag) =>
            socket is null ? new(value, new KeyValuePair<string, object?>(key, tag)) : new(value, socketTag[0], new KeyValuePair<string, object?>(key, tag));

        meter.CreateObservableCounter("vhost_user.connections", () => One(Now().Connections), "{connection}", "Front-end connections accepted");
        meter.CreateObservableUpDownCounter("vhost_user.connections.active", () => { var c = Now(); return One(c.Connections - c.ConnectionsEnded); },
            "{connection}", "Front-end connections being served");
        meter.CreateObservableCounter("vhost_user.reconnects", () => One(Now().Reconnects), "{connection}", "Connections after the first");
        meter.CreateObservableCounter("vhost_user.messages", () => One(Now().Messages), "{message}", "vhost-user messages handled");
        meter.CreateObservableCounter("vhost_user.errors", () =>
        {
            var c = Now();
            return new[] { Tagged(c.ProtocolErrors, "kind", "protocol"), Tagged(c.HandlerFaults, "kind", "handler-fault") };
        }, "{error}", "Connections dropped for a protocol error, and messages whose handler failed, by kind");
        meter.CreateObservableCounter("vhost_user.kicks", () => One(Now().Kicks), "{kick}", "Kick eventfd signals received (driver notifications)");
        meter.CreateObservableCounter("vhost_user.polled", () => One(Now().Polled), "{round}", "Rounds whose work busy-polling found (--poll-us)");
        meter.CreateObservableCounter("vhost_user.interrupts", () => One(Now().Interrupts), "{interrupt}", "Call eventfd signals sent (used-buffer interrupts)");
        meter.CreateObservableCounter("vhost_user.interrupts.suppressed", () => One(Now().InterruptsSuppressed), "{interrupt}",
            "Used-buffer interrupts not sent because the driver suppressed them (EVENT_IDX used_event, NO_INTERRUPT, packed event flags)");
        meter.CreateObservableCounter("vhost_user.iotlb.lookups", () =>
        {
            var c = Now();
            return new[] { Tagged(c.IotlbHits, "result", "hit"), Tagged(c.IotlbMisses, "result", "miss") };
        }, "{lookup}", "IOTLB lookups, by result (a miss asks the front-end)");
        meter.CreateObservableCounter("vhost_user.iotlb.updates", () => One(Now().IotlbUpdates), "{message}", "VHOST_IOTLB_UPDATE messages applied");
        meter.CreateObservableCounter("vhost_user.iotlb.invalidations", () => One(Now().IotlbInvalidations), "{message}", "VHOST_IOTLB_INVALIDATE messages applied");
        meter.CreateObservableCounter("vhost_user.resubmitted", () => One(Now().Resubmitted), "{request}", "In-flight requests resubmitted after a reconnect");
        meter.CreateObservableCounter("vhost_user.config_changes", () => One(Now().ConfigChanges), "{message}", "Config-change notifications sent to the front-end");
        return new VhostUserMetrics(meter);
    }

    /// <summary>Stops publishing.</summary>
    public void Dispose() => Meter.Dispose();
}
