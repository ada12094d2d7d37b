using System.Diagnostics;
using System.Security.Cryptography;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Devices;

/// <summary>
/// virtio-rng (virtio 1.2 §5.4): one request queue; the device fills each writable buffer with entropy from the OS
/// (<see cref="RandomNumberGenerator"/>) or a given source, optionally limited to a byte rate.
/// </summary>
public sealed class EntropyDevice<TMem> : IVirtioDevice<TMem> where TMem : struct, IDeviceMemory
{
    private readonly byte[] _scratch = new byte[4096];
    private readonly QueueService<TMem> _service;
    private readonly Func<Memory<byte>, int>? _source;
    private readonly bool _legacyOnly, _offerAccessPlatform;
    private readonly long _rate, _burst;      // bytes per second, bucket size (0: unlimited)
    private long _tokens, _refilledAt;         // owner thread only
    private long _bytesServed, _requests, _throttled;
    private DeviceContext<TMem>? _ctx;

    /// <summary>
    /// An rng device. <paramref name="source"/> (tests) fills a buffer and returns the bytes it wrote (0 or less: none
    /// now); <paramref name="maxBytesPerSecond"/> &gt; 0 limits the rate (a token bucket holding 100 ms of it, at least 64 bytes).
    /// </summary>
    public EntropyDevice(bool legacyOnly = false, Func<Memory<byte>, int>? source = null, bool offerAccessPlatform = false,
        long maxBytesPerSecond = 0, ushort maxQueueSize = 64)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytesPerSecond);
        _legacyOnly = legacyOnly;
        _source = source;
        _offerAccessPlatform = offerAccessPlatform;
        _rate = maxBytesPerSecond;
        _burst = _rate == 0 ? 0 : Math.Max(64, _rate / 10);
        MaxQueueSize = maxQueueSize;
        _service = new QueueService<TMem>(maxQueueSize);
    }

    /// <inheritdoc/>
    public DeviceId DeviceId => DeviceId.Entropy;
    /// <inheritdoc/>
    // EVENT_IDX: the shared loop keeps avail_event current.
    public ulong DeviceFeatures => VirtioFeature.Bit(VirtioFeature.EventIdx) |
        (_legacyOnly ? 0 : VirtioFeature.Bit(VirtioFeature.Version1) | (_offerAccessPlatform ? VirtioFeature.Bit(VirtioFeature.AccessPlatform) : 0));
    /// <inheritdoc/>
    public int QueueCount => 1;
    /// <inheritdoc/>
    public ushort MaxQueueSize { get; }
    /// <inheritdoc/>
    public int ConfigSize => 0;
    /// <summary>Filling a buffer again after a back-end restart is harmless.</summary>
    public DeviceCapabilities Capabilities => DeviceCapabilities.Resubmit;
    /// <summary>Entropy bytes written into driver buffers.</summary>
    public long BytesServed => Interlocked.Read(ref _bytesServed);
    /// <summary>Requests (chains) answered.</summary>
    public long Requests => Interlocked.Read(ref _requests);
    /// <summary>Times the rate limit made the queue wait.</summary>
    public long Throttled => Interlocked.Read(ref _throttled);
    /// <summary>The rate limit in bytes per second (0: none).</summary>
    public long MaxBytesPerSecond => _rate;

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> destination) { }
    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> source) { }
    /// <inheritdoc/>
    public bool AcceptFeatures(ulong features, out string? reason) { reason = null; return true; }

    /// <inheritdoc/>
    public void Activate(DeviceContext<TMem> context)
    {
        _tokens = _burst;
        _refilledAt = Stopwatch.GetTimestamp();
        _ctx = context;
    }

    /// <inheritdoc/>
    public void Reset() => _ctx = null;

    /// <inheritdoc/>
    public void QueueNotify(int queue)
    {
        if (_ctx is not { } ctx || queue != 0) return;
        Refill();
        var handler = new Handler(this);
        _service.Run(ctx, 0, ref handler);
        // Out of budget with requests waiting: come back when the bucket holds an eighth of its size again.
        if (_rate != 0 && _tokens <= 0)
        {
            Interlocked.Increment(ref _throttled);
            long need = Math.Max(1, _burst / 8);
            ctx.WakeAfter(0, TimeSpan.FromSeconds((double)need / _rate));
        }
    }

    private void Refill()
    {
        if (_rate == 0) return;
        long now = Stopwatch.GetTimestamp();
        long add = (now - _refilledAt) * _rate / Stopwatch.Frequency;
        if (add <= 0) return;
        _tokens = Math.Min(_burst, _tokens + add);
        _refilledAt = now;
    }

    private uint Fill(DeviceQueue<TMem> q, DescriptorChain chain)
    {
        var writer = new ChainWriter<TMem>(q.Memory, chain);
        ulong left = chain.WritableBytes;
        if (_rate != 0) left = Math.Min(left, (ulong)Math.Max(0, _tokens));
        while (left > 0)
        {
            int n = (int)Math.Min(left, (ulong)_scratch.Length);
            int got = _source?.Invoke(_scratch.AsMemory(0, n)) ?? FromOs(_scratch.AsSpan(0, n));
            if (got <= 0 || writer.Write(_scratch.AsSpan(0, Math.Min(got, n)), out _) != MemStatus.Ok) break;
            left -= (ulong)Math.Min(got, n);
        }
        uint written = writer.Written;
        if (_rate != 0) _tokens -= written;
        Interlocked.Add(ref _bytesServed, written);
        Interlocked.Increment(ref _requests);
        return written;
    }

    private static int FromOs(Span<byte> s)
    {
        RandomNumberGenerator.Fill(s);
        return s.Length;
    }

    private readonly struct Handler(EntropyDevice<TMem> device) : IChainHandler<TMem>
    {
        public bool Ready => device._rate == 0 || device._tokens > 0;
        public uint Handle(DeviceQueue<TMem> queue, DescriptorChain chain) => device.Fill(queue, chain);
    }
}
