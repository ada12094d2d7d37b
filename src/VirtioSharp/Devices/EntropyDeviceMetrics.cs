using System.Diagnostics.Metrics;
using VirtioSharp.Memory;

namespace VirtioSharp.Devices;

/// <summary>
/// A <see cref="Meter"/> named <see cref="MeterName"/> for one <see cref="EntropyDevice{TMem}"/>: observable counters
/// over the device's own counters (requests, bytes served, rate-limit waits), read only when a listener collects.
/// </summary>
public sealed class EntropyDeviceMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VirtioSharp.Rng";

    private EntropyDeviceMetrics(Meter meter) => Meter = meter;

    /// <summary>The meter the instruments belong to.</summary>
    public Meter Meter { get; }

    /// <summary>Publishes <paramref name="device"/>'s counters on a new meter (from <paramref name="factory"/> when given).</summary>
    public static EntropyDeviceMetrics Create<TMem>(EntropyDevice<TMem> device, IMeterFactory? factory = null)
        where TMem : struct, IDeviceMemory
    {
        ArgumentNullException.ThrowIfNull(device);
        var meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        meter.CreateObservableCounter("virtio.rng.requests", () => device.Requests, "{request}", "Requests (chains) answered");
        meter.CreateObservableCounter("virtio.rng.bytes", () => device.BytesServed, "By", "Entropy bytes written into driver buffers");
        meter.CreateObservableCounter("virtio.rng.throttled", () => device.Throttled, "{wait}", "Times the rate limit made the queue wait");
        return new EntropyDeviceMetrics(meter);
    }

    /// <summary>Stops publishing.</summary>
    public void Dispose() => Meter.Dispose();
}
