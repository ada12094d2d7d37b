using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Benchmarks;

/// <summary>
/// One-thread round trip, batches of 32: driver adds [64 B readable | 64 B writable], device pops and returns it with
/// 64 bytes written, driver takes it back. No notifications. One op = one chain. Split and packed rings side by side,
/// with and without IN_ORDER (where the device returns the whole batch with one used element, §2.7.9 / §2.8.20).
/// </summary>
[MemoryDiagnoser]
public class RoundTripBenchmarks
{
    private const int Batch = 32;
    private const ushort QueueSize = 256;
    private readonly object _token = new();
    private PlainDmaPlatform _plain = null!;
    private DriverQueue _directDriver = null!;
    private DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>> _directDevice = null!;
    private SimPlatform _sim = null!;
    private DriverQueue _iommuDriver = null!;
    private DeviceQueue<DeviceMemory<TranslatorRef, RamPort>> _iommuDevice = null!;
    private SimPlatform _simLazy = null!;
    private DriverQueue _lazyDriver = null!;
    private DeviceQueue<DeviceMemory<TranslatorRef, RamPort>> _lazyDevice = null!;
    private ulong _lazyIn, _lazyOut;
    private ulong _in, _out, _simIn, _simOut;
    private readonly DescriptorChain[] _popped = new DescriptorChain[Batch];
    private DriverQueue _splitInOrderDriver = null!, _packedDriver = null!, _packedInOrderDriver = null!, _iommuPackedDriver = null!;
    private DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>> _splitInOrderDevice = null!, _packedDevice = null!, _packedInOrderDevice = null!;
    private DeviceQueue<DeviceMemory<TranslatorRef, RamPort>> _iommuPackedDevice = null!;
    private SimPlatform _simPacked = null!;
    private ulong _packedIn, _packedOut;
    private SimPlatform _simPremapped = null!;
    private DriverQueue _premappedDriver = null!;
    private DeviceQueue<DeviceMemory<TranslatorRef, RamPort>> _premappedDevice = null!;
    private DmaMapping[] _premappedIn = null!, _premappedOut = null!;

    [GlobalSetup]
    public void Setup()
    {
        _plain = PlainDmaPlatform.Create(16 << 20);
        var opts = new QueueOptions();
        _directDriver = new DriverQueue(new DirectDmaOps(_plain), _plain.Ram, QueueSize, opts);
        _directDevice = new(DeviceMemory.Identity(_plain.Ram), _directDriver.DeviceLayout, opts);
        _in = _plain.Allocator.Allocate(4096);
        _out = _plain.Allocator.Allocate(4096);
        (_splitInOrderDriver, _splitInOrderDevice) = Direct(opts with { InOrder = true });
        (_packedDriver, _packedDevice) = Direct(opts with { Packed = true });
        (_packedInOrderDriver, _packedInOrderDevice) = Direct(opts with { Packed = true, InOrder = true });

        _sim = new SimPlatform(new SimPlatformOptions { RamSize = 16 << 20, HasIommu = true, BouncePoolSize = 0 });
        var dev = _sim.Attach("bench", behindIommu: true);
        _iommuDriver = new DriverQueue(new IommuDmaOps(_sim, dev.Domain!), _sim.Ram, QueueSize, opts);
        _iommuDevice = new(DeviceMemory.Translated(dev.Domain!, _sim.Ram), _iommuDriver.DeviceLayout, opts);
        _simIn = _sim.Allocator.Allocate(4096);
        _simOut = _sim.Allocator.Allocate(4096);
        // Its own platform, as for the lazy row: two queues on one IOMMU domain would share (and skew) its IOVA space.
        _simPacked = new SimPlatform(new SimPlatformOptions { RamSize = 16 << 20, HasIommu = true, BouncePoolSize = 0 });
        var packedDev = _simPacked.Attach("bench", behindIommu: true);
        var packedOpts = opts with { Packed = true };
        _iommuPackedDriver = new DriverQueue(new IommuDmaOps(_simPacked, packedDev.Domain!), _simPacked.Ram, QueueSize, packedOpts);
        _iommuPackedDevice = new(DeviceMemory.Translated(packedDev.Domain!, _simPacked.Ram), _iommuPackedDriver.DeviceLayout, packedOpts);
        _packedIn = _simPacked.Allocator.Allocate(4096);
        _packedOut = _simPacked.Allocator.Allocate(4096);

        _simLazy = new SimPlatform(new SimPlatformOptions { RamSize = 16 << 20, HasIommu = true, BouncePoolSize = 0 });
        var lazyDev = _simLazy.Attach("bench", behindIommu: true);
        _lazyDriver = new DriverQueue(new IommuDmaOps(_simLazy, lazyDev.Domain!, InvalidationMode.Lazy), _simLazy.Ram, QueueSize, opts);
        _lazyDevice = new(DeviceMemory.Translated(lazyDev.Domain!, _simLazy.Ram), _lazyDriver.DeviceLayout, opts);
        _lazyIn = _simLazy.Allocator.Allocate(4096);
        _lazyOut = _simLazy.Allocator.Allocate(4096);

        // Premapped (strict IOMMU ops): the two buffers are mapped once here; chains reuse the mappings.
        _simPremapped = new SimPlatform(new SimPlatformOptions { RamSize = 16 << 20, HasIommu = true, BouncePoolSize = 0 });
        var preDev = _simPremapped.Attach("bench", behindIommu: true);
        _premappedDriver = new DriverQueue(new IommuDmaOps(_simPremapped, preDev.Domain!), _simPremapped.Ram, QueueSize, opts);
        _premappedDevice = new(DeviceMemory.Translated(preDev.Domain!, _simPremapped.Ram), _premappedDriver.DeviceLayout, opts);
        _premappedDriver.Dma.Map(_simPremapped.Allocator.Allocate(4096), 64, DmaDirection.ToDevice, out var pin);
        _premappedDriver.Dma.Map(_simPremapped.Allocator.Allocate(4096), 64, DmaDirection.FromDevice, out var pout);
        (_premappedIn, _premappedOut) = ([pin], [pout]);
    }

    private (DriverQueue, DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>>) Direct(QueueOptions o)
    {
        var driver = new DriverQueue(new DirectDmaOps(_plain), _plain.Ram, QueueSize, o);
        return (driver, new(DeviceMemory.Identity(_plain.Ram), driver.DeviceLayout, o));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _plain.Ram.Dispose();
        _sim.Dispose();
        _simLazy.Dispose();
        _simPacked.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public int Direct() => Run(_directDriver, _directDevice, _in, _out);

    [Benchmark(OperationsPerInvoke = Batch)]
    public int DirectInOrder() => RunInOrder(_splitInOrderDriver, _splitInOrderDevice, _in, _out);

    [Benchmark(OperationsPerInvoke = Batch)]
    public int DirectPacked() => Run(_packedDriver, _packedDevice, _in, _out);

    [Benchmark(OperationsPerInvoke = Batch)]
    public int DirectPackedInOrder() => RunInOrder(_packedInOrderDriver, _packedInOrderDevice, _in, _out);

    [Benchmark(OperationsPerInvoke = Batch)]
    public int IommuStrict() => Run(_iommuDriver, _iommuDevice, _simIn, _simOut);

    [Benchmark(OperationsPerInvoke = Batch)]
    public int IommuStrictPacked() => Run(_iommuPackedDriver, _iommuPackedDevice, _packedIn, _packedOut);

    [Benchmark(OperationsPerInvoke = Batch)]
    public int IommuLazy() => Run(_lazyDriver, _lazyDevice, _lazyIn, _lazyOut);

    /// <summary>Strict IOMMU ops with buffers the driver premapped: no map/unmap (nor IOTLB invalidation) per chain.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public int IommuStrictPremapped()
    {
        for (int i = 0; i < Batch; i++) _premappedDriver.AddPremapped(_premappedIn, _premappedOut, _token, out _);
        while (_premappedDevice.Pop(out var chain) == QueueStatus.Ok) _premappedDevice.AddUsed(chain!, 64);
        int n = 0;
        while (_premappedDriver.GetUsed(out _, out _) == QueueStatus.Ok) n++;
        if (n != Batch) throw new InvalidOperationException($"round trip returned {n} of {Batch} chains: {_premappedDriver.Error} {_premappedDevice.Error}");
        return n;
    }

    // Both harnesses are inlined into each [Benchmark] method: as one shared method the JIT's choices for it differed by
    // row (split IN_ORDER measured 89-97 ns through it, 60 ns with the same code written inline in its own method).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Run<TMem>(DriverQueue driver, DeviceQueue<TMem> device, ulong inBuf, ulong outBuf) where TMem : struct, IDeviceMemory
    {
        ReadOnlySpan<BufferSegment> r = [new BufferSegment(inBuf, 64)];
        ReadOnlySpan<BufferSegment> w = [new BufferSegment(outBuf, 64)];
        for (int i = 0; i < Batch; i++) driver.Add(r, w, _token, out _);
        while (device.Pop(out var chain) == QueueStatus.Ok) device.AddUsed(chain!, 64);
        int n = 0;
        while (driver.GetUsed(out _, out _) == QueueStatus.Ok) n++;
        // A broken queue would make an op free; refuse to measure that.
        if (n != Batch) throw new InvalidOperationException($"round trip returned {n} of {Batch} chains: {driver.Error} {device.Error}");
        return n;
    }

    // IN_ORDER: the device pops the batch and returns it with one used element (every chain fully written).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int RunInOrder<TMem>(DriverQueue driver, DeviceQueue<TMem> device, ulong inBuf, ulong outBuf) where TMem : struct, IDeviceMemory
    {
        ReadOnlySpan<BufferSegment> r = [new BufferSegment(inBuf, 64)];
        ReadOnlySpan<BufferSegment> w = [new BufferSegment(outBuf, 64)];
        for (int i = 0; i < Batch; i++) driver.Add(r, w, _token, out _);
        int popped = 0;
        while (popped < Batch && device.Pop(out var chain) == QueueStatus.Ok) _popped[popped++] = chain!;
        device.AddUsedBatch(_popped.AsSpan(0, popped), 64);
        int n = 0;
        while (driver.GetUsed(out _, out _) == QueueStatus.Ok) n++;
        if (n != Batch) throw new InvalidOperationException($"round trip returned {n} of {Batch} chains: {driver.Error} {device.Error}");
        return n;
    }
}
