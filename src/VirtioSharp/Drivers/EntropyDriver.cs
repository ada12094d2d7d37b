using VirtioSharp.Dma;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Drivers;

/// <summary>virtio-rng driver: posts a guest buffer, waits for the device to fill it, copies the bytes out.</summary>
public sealed class EntropyDriver : IDisposable
{
    private readonly VirtioDriverDevice _dev;
    private readonly IDmaPlatform _platform;
    private readonly object _token = new();

    private EntropyDriver(VirtioDriverDevice dev, IDmaPlatform platform) { _dev = dev; _platform = platform; }

    /// <summary>The generic driver device underneath.</summary>
    public VirtioDriverDevice Device => _dev;

    /// <summary>Probes an entropy device on <paramref name="t"/>; throws <see cref="VirtioProbeException"/> if it is not usable.</summary>
    public static EntropyDriver Probe(IVirtioTransport t, DriverEnvironment env)
    {
        if (t.DeviceId != DeviceId.Entropy) throw new VirtioProbeException($"device is {t.DeviceId}, not an entropy device");
        return new EntropyDriver(VirtioDriverDevice.Probe(t, env, VirtioFeature.Bit(VirtioFeature.EventIdx), 1, 64), env.Platform);
    }

    /// <summary>Fills <paramref name="destination"/>; returns bytes obtained (the device may return fewer).</summary>
    public int Read(Span<byte> destination)
    {
        ulong gpa = _platform.Allocator.Allocate((ulong)destination.Length);
        try
        {
            var q = _dev.Queue(0);
            var st = q.Add([], [new BufferSegment(gpa, (uint)destination.Length)], _token, out var dma);
            if (st != QueueStatus.Ok) throw new InvalidOperationException($"virtio-rng: cannot queue the buffer: {st} {dma}");
            _dev.Kick(0);
            uint len = 0;
            bool got = false;
            if (!_dev.WaitUntil(() => got || (got = q.GetUsed(out _, out len) == QueueStatus.Ok)))
                throw new TimeoutException("virtio-rng: the device did not return the buffer");
            _platform.Cpu.Read(gpa, destination[..(int)len]);
            return (int)len;
        }
        finally { _platform.Allocator.Free(gpa, (ulong)destination.Length); }
    }

    /// <summary>Removes the device.</summary>
    public void Dispose() => _dev.Remove();
}
