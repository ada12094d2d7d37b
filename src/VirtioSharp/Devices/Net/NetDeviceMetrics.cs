using System.Diagnostics.Metrics;
using VirtioSharp.Memory;

namespace VirtioSharp.Devices.Net;

/// <summary>
/// A <see cref="Meter"/> named <see cref="MeterName"/> for one <see cref="NetDevice{TMem}"/>: packets and bytes per queue
/// pair and direction, drops by direction and reason, receive rounds that found no buffers, control commands by
/// result, and the link state. Observable instruments over the counters the device keeps anyway (read only when a
/// listener collects), so the rings do nothing per packet for them.
/// </summary>
public sealed class NetDeviceMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VirtioSharp.Net";

    private NetDeviceMetrics(Meter meter) => Meter = meter;

    /// <summary>The meter the instruments belong to.</summary>
    public Meter Meter { get; }

    /// <summary>Publishes <paramref name="device"/>'s counters on a new meter (from <paramref name="factory"/> when given), tagged with <paramref name="name"/>.</summary>
    public static NetDeviceMetrics Create<TMem>(NetDevice<TMem> device, string name = "net0", IMeterFactory? factory = null)
        where TMem : struct, IDeviceMemory
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentException.ThrowIfNullOrEmpty(name);
        var meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        KeyValuePair<string, object?> Device = new("device", name);
        Measurement<long> M(long v, params KeyValuePair<string, object?>[] tags) => new(v, [Device, .. tags]);
        static KeyValuePair<string, object?> T(string k, object v) => new(k, v);

        meter.CreateObservableCounter("virtio.net.packets",
            () => device.QueueCounters().Select(q => M(q.Packets, T("queue_pair", q.Pair), T("direction", q.Direction))).ToArray(),
            "{packet}", "Frames the driver sent (tx) or received (rx), per queue pair");
        meter.CreateObservableCounter("virtio.net.bytes",
            () => device.QueueCounters().Select(q => M(q.Bytes, T("queue_pair", q.Pair), T("direction", q.Direction))).ToArray(),
            "By", "Frame bytes without the virtio-net header, per queue pair and direction");
        meter.CreateObservableCounter("virtio.net.dropped", () =>
        {
            var s = device.Stats;
            return new[]
            {
                M(s.TxShort, T("direction", "tx"), T("reason", "short")), M(s.TxOversize, T("direction", "tx"), T("reason", "oversize")),
                M(s.TxBadGso, T("direction", "tx"), T("reason", "gso")), M(s.TxBadCsum, T("direction", "tx"), T("reason", "csum")),
                M(s.TxLinkDown, T("direction", "tx"), T("reason", "link-down")), M(s.TxPortDropped, T("direction", "tx"), T("reason", "port")),
                M(s.TxFault, T("direction", "tx"), T("reason", "fault")),
                M(s.RxLost, T("direction", "rx"), T("reason", "lost")), M(s.RxFiltered, T("direction", "rx"), T("reason", "filtered")),
                M(s.RxBadHeader, T("direction", "rx"), T("reason", "bad-header")), M(s.RxBadBuffers, T("direction", "rx"), T("reason", "bad-buffers")),
            };
        }, "{packet}", "Frames dropped, by direction and reason (each a validation the peer failed, or a port's refusal)");
        meter.CreateObservableCounter("virtio.net.rx.no_buffers", () => M(device.Stats.RxNoBuffers), "{round}",
            "Times frames waited because the driver had posted no receive buffers");
        meter.CreateObservableCounter("virtio.net.ctrl.commands", () =>
        {
            var s = device.Stats;
            return new[] { M(s.CtrlOk, T("result", "ok")), M(s.CtrlErr, T("result", "err")), M(s.CtrlMalformed, T("result", "malformed")) };
        }, "{command}", "Control-queue commands, by result");
        meter.CreateObservableGauge("virtio.net.link.up", () => M(device.LinkUp ? 1 : 0), "{link}", "1 while the link is up (config STATUS)");
        return new NetDeviceMetrics(meter);
    }

    /// <summary>Stops publishing.</summary>
    public void Dispose() => Meter.Dispose();
}
