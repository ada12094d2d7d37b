using System.Diagnostics.Metrics;

namespace VirtioSharp.Net.Switch;

/// <summary>
/// A <see cref="Meter"/> named <see cref="MeterName"/> for one <see cref="NetSwitch"/>: observable counters over every
/// port's <see cref="NetSwitchPortStats"/> (tagged <c>port</c> = index, <c>switch</c> = name, and for packets/bytes
/// <c>direction</c> = tx from the guest or rx to it) and the MAC table, read only when a listener collects. Live with
/// <c>dotnet-counters monitor -n virtio-sharp --counters VirtioSharp.NetSwitch</c>.
/// </summary>
public sealed class NetSwitchMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VirtioSharp.NetSwitch";

    private NetSwitchMetrics(Meter meter) => Meter = meter;

    /// <summary>The meter the instruments belong to.</summary>
    public Meter Meter { get; }

    /// <summary>Publishes <paramref name="sw"/>'s counters on a new meter (from <paramref name="factory"/> when given).</summary>
    public static NetSwitchMetrics Create(NetSwitch sw, IMeterFactory? factory = null)
    {
        ArgumentNullException.ThrowIfNull(sw);
        var meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        string name = sw.Options.Name;
        IEnumerable<Measurement<long>> PerPort(Func<NetSwitchPortStats, long> value, string? direction = null) =>
            sw.Ports.Select(p => direction is null
                ? new Measurement<long>(value(p.Stats), new("switch", name), new("port", p.Index))
                : new Measurement<long>(value(p.Stats), new("switch", name), new("port", p.Index), new("direction", direction)));
        meter.CreateObservableCounter("net_switch.packets", () => PerPort(s => s.TxPackets, "tx").Concat(PerPort(s => s.RxPackets, "rx")),
            "{packet}", "Frames per port: tx from its guest into the switch, rx delivered to its guest");
        meter.CreateObservableCounter("net_switch.bytes", () => PerPort(s => s.TxBytes, "tx").Concat(PerPort(s => s.RxBytes, "rx")),
            "By", "Frame bytes per port and direction");
        meter.CreateObservableCounter("net_switch.dropped", () => PerPort(s => s.TxDropped, "tx").Concat(PerPort(s => s.RxDropped, "rx")),
            "{packet}", "Frames dropped per port: tx (runt, over the MTU), rx (queue full, no guest, buffers too small)");
        meter.CreateObservableCounter("net_switch.floods", () => PerPort(s => s.Floods), "{packet}", "Frames from the port sent to every other port");
        meter.CreateObservableCounter("net_switch.filtered", () => PerPort(s => s.Filtered), "{packet}", "Frames not sent back to the port they came from");
        meter.CreateObservableUpDownCounter("net_switch.mac_entries", () => new Measurement<long>(sw.MacEntries, new KeyValuePair<string, object?>("switch", name)),
            "{entry}", "Learned MAC addresses not aged out");
        meter.CreateObservableCounter("net_switch.mac_evictions", () => new Measurement<long>(sw.MacEvictions, new KeyValuePair<string, object?>("switch", name)),
            "{entry}", "Learned addresses that replaced a live one (the table was full)");
        return new NetSwitchMetrics(meter);
    }

    /// <summary>Stops publishing.</summary>
    public void Dispose() => Meter.Dispose();
}
