using BenchmarkDotNet.Attributes;
using VirtioSharp.Devices;
using VirtioSharp.Dma;
using VirtioSharp.Host;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Benchmarks;

using Mem = DeviceMemory<IdentityTranslate, RamPort>;

/// <summary>
/// What the shared device loop costs: the same round trip as <see cref="RoundTripBenchmarks"/> (batch 32, 64 B + 64 B,
/// direct ops), with the device side written by hand (pop, used, notification re-check, interrupt check) or run by
/// <see cref="QueueService{TMem}"/> through a device host with a struct handler. One op = one chain.
/// </summary>
[MemoryDiagnoser]
public class DeviceLoopBenchmarks
{
    private const int Batch = 32;
    private const ushort QueueSize = 256;
    private readonly object _token = new();
    private PlainDmaPlatform _plain = null!;
    private DriverQueue _handDriver = null!, _serviceDriver = null!, _inOrderDriver = null!;
    private DeviceQueue<Mem> _handDevice = null!;
    private Loop _service = null!, _inOrder = null!;
    private ulong _in, _out;

    [GlobalSetup]
    public void Setup()
    {
        _plain = PlainDmaPlatform.Create(16 << 20);
        _in = _plain.Allocator.Allocate(4096);
        _out = _plain.Allocator.Allocate(4096);
        var opts = new QueueOptions();
        _handDriver = new DriverQueue(new DirectDmaOps(_plain), _plain.Ram, QueueSize, opts);
        _handDevice = new(DeviceMemory.Identity(_plain.Ram), _handDriver.DeviceLayout, opts);
        (_serviceDriver, _service) = Make(0);
        (_inOrderDriver, _inOrder) = Make(VirtioFeature.Bit(VirtioFeature.InOrder));
    }

    private (DriverQueue, Loop) Make(ulong extra)
    {
        ulong features = VirtioFeature.Bit(VirtioFeature.Version1) | extra;
        var driver = new DriverQueue(new DirectDmaOps(_plain), _plain.Ram, QueueSize, QueueOptions.FromFeatures(features));
        var device = new DeviceQueue<Mem>(DeviceMemory.Identity(_plain.Ram), driver.DeviceLayout, QueueOptions.FromFeatures(features));
        var loop = new Loop(features);
        var host = new VirtioDeviceHost<Mem>(loop, new OneQueue(device));
        if (!host.NegotiateFeatures(features, out var why)) throw new InvalidOperationException(why);
        host.WriteStatus(host.Status | DeviceStatus.DriverOk);
        loop.Host = host;
        return (driver, loop);
    }

    [GlobalCleanup]
    public void Cleanup() => _plain.Ram.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public int HandWritten()
    {
        Fill(_handDriver);
        var q = _handDevice;
        do
        {
            q.DisableNotifications();
            while (q.Pop(out var chain) == QueueStatus.Ok) q.AddUsed(chain!, 64);
        } while (q.EnableNotifications());
        q.NeedsInterrupt();
        return Drain(_handDriver);
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int SharedLoop()
    {
        Fill(_serviceDriver);
        _service.Host!.ServiceQueue(0, kicked: true);
        return Drain(_serviceDriver);
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int SharedLoopInOrder()
    {
        Fill(_inOrderDriver);
        _inOrder.Host!.ServiceQueue(0, kicked: true);
        return Drain(_inOrderDriver);
    }

    private void Fill(DriverQueue driver)
    {
        ReadOnlySpan<BufferSegment> r = [new BufferSegment(_in, 64)];
        ReadOnlySpan<BufferSegment> w = [new BufferSegment(_out, 64)];
        for (int i = 0; i < Batch; i++) driver.Add(r, w, _token, out _);
    }

    private static int Drain(DriverQueue driver)
    {
        int n = 0;
        while (driver.GetUsed(out _, out _) == QueueStatus.Ok) n++;
        if (n != Batch) throw new InvalidOperationException($"round trip returned {n} of {Batch} chains: {driver.Error}");
        return n;
    }

    /// <summary>A device that returns every chain as fully written, through the shared loop.</summary>
    private sealed class Loop(ulong features) : IVirtioDevice<Mem>
    {
        private readonly QueueService<Mem> _service = new(QueueSize);
        private DeviceContext<Mem>? _ctx;
        public VirtioDeviceHost<Mem>? Host { get; set; }
        public DeviceId DeviceId => DeviceId.Entropy;
        public ulong DeviceFeatures => features;
        public int QueueCount => 1;
        public ushort MaxQueueSize => QueueSize;
        public int ConfigSize => 0;
        public void ReadConfig(int offset, Span<byte> destination) { }
        public void WriteConfig(int offset, ReadOnlySpan<byte> source) { }
        public bool AcceptFeatures(ulong f, out string? reason) { reason = null; return true; }
        public void Activate(DeviceContext<Mem> context) => _ctx = context;
        public void Reset() => _ctx = null;
        public void QueueNotify(int queue)
        {
            var h = new Full();
            _service.Run(_ctx!, queue, ref h);
        }
    }

    private readonly struct Full : IChainHandler<Mem>
    {
        public bool Ready => true;
        public uint Handle(DeviceQueue<Mem> queue, DescriptorChain chain) => (uint)chain.WritableBytes;
    }

    /// <summary>The host's transport: one ready queue, interrupts dropped.</summary>
    private sealed class OneQueue(DeviceQueue<Mem> queue) : IDeviceHostTransport<Mem>
    {
        public DeviceQueue<Mem>?[]? CreateQueues(ulong features, out string? failure) { failure = null; return [queue]; }
        public void Interrupt(int queue) { }
        public void ConfigInterrupt() { }
        public void NeedsReset(string reason, int queue) => throw new InvalidOperationException(reason);
        public void Wake(int queue) { }
        public bool PollsEventSources => false;
    }
}
