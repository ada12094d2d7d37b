using System.Security.Cryptography;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Devices;

/// <summary>virtio-rng (virtio 1.2 §5.4): one request queue; the device fills each writable buffer with entropy.</summary>
public sealed class EntropyDevice<TMem>(bool legacyOnly = false, Func<Memory<byte>, int>? source = null, bool offerAccessPlatform = false) : IVirtioDevice<TMem>
    where TMem : struct, IDeviceMemory
{
    private readonly byte[] _scratch = new byte[4096];
    private DeviceContext<TMem>? _ctx;

    public DeviceId DeviceId => DeviceId.Entropy;
    // EVENT_IDX: this device pops until empty without touching notifications; the queue then publishes avail_event.
    public ulong DeviceFeatures => VirtioFeature.Bit(VirtioFeature.EventIdx) |
        (legacyOnly ? 0 : VirtioFeature.Bit(VirtioFeature.Version1) | (offerAccessPlatform ? VirtioFeature.Bit(VirtioFeature.AccessPlatform) : 0));
    public int QueueCount => 1;
    public ushort MaxQueueSize => 64;
    public int ConfigSize => 0;
    public long BytesServed { get; private set; }

    public void ReadConfig(int offset, Span<byte> destination) { }
    public void WriteConfig(int offset, ReadOnlySpan<byte> source) { }
    public bool AcceptFeatures(ulong features, out string? reason) { reason = null; return true; }
    public void Activate(DeviceContext<TMem> context) => _ctx = context;
    public void Reset() => _ctx = null;

    public void QueueNotify(int queue)
    {
        var q = _ctx?.Queues[0];
        if (q is null) return;
        while (q.Pop(out var chain) == QueueStatus.Ok)
        {
            var writer = new ChainWriter<TMem>(q.Memory, chain!);
            ulong left = chain!.WritableBytes;
            while (left > 0)
            {
                int n = (int)Math.Min(left, (ulong)_scratch.Length);
                int got = source?.Invoke(_scratch.AsMemory(0, n)) ?? Fill(_scratch.AsSpan(0, n));
                if (got <= 0 || writer.Write(_scratch.AsSpan(0, got), out _) != MemStatus.Ok) break;
                left -= (ulong)got;
            }
            BytesServed += writer.Written;
            if (q.AddUsed(chain, writer.Written) != QueueStatus.Ok) return;
        }
        _ctx!.InterruptIfNeeded(0);
    }

    private static int Fill(Span<byte> s)
    {
        RandomNumberGenerator.Fill(s);
        return s.Length;
    }
}
