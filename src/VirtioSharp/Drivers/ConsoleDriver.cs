using System.Buffers.Binary;
using VirtioSharp.Dma;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Drivers;

/// <summary>virtio-console driver for one port: keeps receive buffers posted, writes through the transmit queue.</summary>
public sealed class ConsoleDriver : IDisposable
{
    private const int RxBuffers = 8, RxSize = 256;
    private readonly VirtioDriverDevice _dev;
    private readonly IDmaPlatform _platform;
    private readonly ulong _rxMemory;
    private readonly List<byte> _received = new();
    private sealed record Rx(ulong Gpa);
    private sealed record Tx(ulong Gpa, ulong Length);

    private ConsoleDriver(VirtioDriverDevice dev, IDmaPlatform platform)
    {
        _dev = dev;
        _platform = platform;
        if (dev.Has(ConsoleFeature.Size))
        {
            Span<byte> c = stackalloc byte[4];
            dev.ReadConfig(0, c);
            Cols = BinaryPrimitives.ReadUInt16LittleEndian(c);
            Rows = BinaryPrimitives.ReadUInt16LittleEndian(c[2..]);
        }
        _rxMemory = platform.Allocator.Allocate(RxBuffers * RxSize);
        try
        {
            for (int i = 0; i < RxBuffers; i++) PostRx(new Rx(_rxMemory + (ulong)(i * RxSize)));
        }
        catch
        {
            dev.Remove();   // unmaps what was posted before the receive memory goes back
            platform.Allocator.Free(_rxMemory, RxBuffers * RxSize);
            throw;
        }
        dev.Kick(0);
        dev.OnUsed = OnUsed;
    }

    public VirtioDriverDevice Device => _dev;
    public ushort Cols { get; }
    public ushort Rows { get; }

    public static ConsoleDriver Probe(IVirtioTransport t, DriverEnvironment env)
    {
        if (t.DeviceId != DeviceId.Console) throw new VirtioProbeException($"device is {t.DeviceId}, not a console");
        var dev = VirtioDriverDevice.Probe(t, env, VirtioFeature.Bit(ConsoleFeature.Size) | VirtioFeature.Bit(VirtioFeature.EventIdx), 2, 64);
        // As for virtio-blk: a failure in the console's own setup must not leave the device live and its rings leaked.
        try { return new ConsoleDriver(dev, env.Platform); }
        catch { dev.FailProbe(); throw; }
    }

    private void PostRx(Rx rx)
    {
        var st = _dev.Queue(0).Add([], [new BufferSegment(rx.Gpa, RxSize)], rx, out var dma);
        if (st != QueueStatus.Ok) throw new InvalidOperationException($"virtio-console: cannot post a receive buffer: {st} {dma}");
    }

    private void OnUsed(int queue)
    {
        var q = _dev.Queue(queue);
        bool reposted = false;
        while (q.GetUsed(out var token, out uint len) == QueueStatus.Ok)
        {
            if (token is Rx rx)
            {
                var b = new byte[len];
                _platform.Cpu.Read(rx.Gpa, b);
                _received.AddRange(b);
                PostRx(rx);
                reposted = true;
            }
            else if (token is Tx tx) _platform.Allocator.Free(tx.Gpa, tx.Length);
        }
        if (reposted) _dev.Kick(0);
    }

    /// <summary>Sends bytes to the host and waits until the device consumed them.</summary>
    public void Write(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty) return;
        ulong gpa = _platform.Allocator.Allocate((ulong)data.Length);
        _platform.Cpu.Write(gpa, data);
        var q = _dev.Queue(1);
        var st = q.Add([new BufferSegment(gpa, (uint)data.Length)], [], new Tx(gpa, (ulong)data.Length), out var dma);
        if (st != QueueStatus.Ok) { _platform.Allocator.Free(gpa, (ulong)data.Length); throw new InvalidOperationException($"virtio-console: cannot send: {st} {dma}"); }
        _dev.Kick(1);
        if (!_dev.WaitUntil(() => q.Outstanding == 0)) throw new TimeoutException("virtio-console: the device did not consume the output");
    }

    /// <summary>Takes what the host typed so far (after polling the machine once).</summary>
    public byte[] ReadAvailable()
    {
        _dev.PollOnce();
        var r = _received.ToArray();
        _received.Clear();
        return r;
    }

    public void Dispose()
    {
        foreach (var t in _dev.Remove()) if (t is Tx tx) _platform.Allocator.Free(tx.Gpa, tx.Length);
        _platform.Allocator.Free(_rxMemory, RxBuffers * RxSize);
    }
}
