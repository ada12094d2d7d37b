using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Benchmarks;

using Mem = DeviceMemory<IdentityTranslate, RamPort>;

/// <summary>
/// What dirty logging (live migration) costs a device: the hand-written round trip of <see cref="DeviceLoopBenchmarks"/>
/// (batch 32, 64 B readable + 64 B writable, direct ops) with the device writing its 64 bytes through
/// <see cref="ChainWriter{TMem}"/>, over RAM with no log, with a log attached but off (VHOST_F_LOG_ALL not negotiated:
/// the no-migration path of every vhost-user queue), and with logging on. One op = one chain.
/// </summary>
[MemoryDiagnoser]
public unsafe class DirtyLogBenchmarks
{
    private const int Batch = 32;
    private const ushort QueueSize = 256;

    /// <summary>How the device's RAM port logs.</summary>
    public enum Logging { NoLog, LogOff, LogOn }

    [Params(Logging.NoLog, Logging.LogOff, Logging.LogOn)]
    public Logging Mode { get; set; }

    private readonly object _token = new();
    private readonly byte[] _payload = new byte[64];
    private PlainDmaPlatform _plain = null!;
    private DriverQueue _driver = null!;
    private DeviceQueue<Mem> _device = null!;
    private byte* _bitmap;
    private ulong _in, _out;

    [GlobalSetup]
    public void Setup()
    {
        _plain = PlainDmaPlatform.Create(16 << 20);
        _in = _plain.Allocator.Allocate(4096);
        _out = _plain.Allocator.Allocate(4096);
        _bitmap = (byte*)NativeMemory.AlignedAlloc(4096, 4096);
        new Span<byte>(_bitmap, 4096).Clear();
        DirtyLog? log = null;
        if (Mode != Logging.NoLog)
        {
            log = new DirtyLog { Enabled = Mode == Logging.LogOn };
            log.Attach((nint)_bitmap, 512);   // 16 MiB of guest memory
        }
        var opts = new QueueOptions();
        _driver = new DriverQueue(new DirectDmaOps(_plain), _plain.Ram, QueueSize, opts);
        _device = new(new Mem(default, new RamPort(_plain.Ram, log)), _driver.DeviceLayout, opts);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _plain.Ram.Dispose();
        NativeMemory.AlignedFree(_bitmap);
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int RoundTrip()
    {
        ReadOnlySpan<BufferSegment> r = [new BufferSegment(_in, 64)];
        ReadOnlySpan<BufferSegment> w = [new BufferSegment(_out, 64)];
        for (int i = 0; i < Batch; i++) _driver.Add(r, w, _token, out _);
        var q = _device;
        do
        {
            q.DisableNotifications();
            while (q.Pop(out var chain) == QueueStatus.Ok)
            {
                var writer = new ChainWriter<Mem>(q.Memory, chain!);
                writer.Write(_payload, out _);
                q.AddUsed(chain!, writer.Written);
            }
        } while (q.EnableNotifications());
        q.NeedsInterrupt();
        int n = 0;
        while (_driver.GetUsed(out _, out _) == QueueStatus.Ok) n++;
        if (n != Batch) throw new InvalidOperationException($"round trip returned {n} of {Batch} chains: {_driver.Error}");
        return n;
    }
}
