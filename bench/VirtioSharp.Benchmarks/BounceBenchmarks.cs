using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Benchmarks;

/// <summary>
/// Bounce (swiotlb) copying of 4 KiB payloads against a plain 4 KiB memcpy in the same run. One op = one 4 KiB
/// buffer (or one chain for the ring row); the GB/s column divides the bytes copied per op by the time per op.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(Config))]
public unsafe class BounceBenchmarks
{
    private sealed class Config : ManualConfig
    {
        public Config() => AddColumn(new ThroughputColumn());
    }

    private const int Batch = 32;
    private const uint Payload = 4096;
    private const ulong PoolSize = 1 << 20;   // the simulated platform's default pool
    private readonly object _token = new();
    private byte* _src, _dst, _ring;
    private PlainDmaPlatform _plain = null!;
    private BounceDmaOps _bounce = null!;
    private ulong _buf, _bufOut;
    private DriverQueue _driver = null!;
    private DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>> _device = null!;

    [GlobalSetup]
    public void Setup()
    {
        _src = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(Payload, 4096);
        _dst = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(Payload, 4096);
        _ring = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)PoolSize, 4096);
        new Span<byte>(_src, (int)Payload).Fill(0x5a);
        new Span<byte>(_ring, (int)PoolSize).Clear();

        _plain = PlainDmaPlatform.Create(16 << 20);
        _bounce = new BounceDmaOps(new BouncePool(_plain, PoolSize));
        _buf = _plain.Allocator.Allocate(Payload);
        _bufOut = _plain.Allocator.Allocate(Payload);
        _plain.Ram.Fill(_buf, Payload, 0x5a);
        var opts = new QueueOptions();
        _driver = new DriverQueue(_bounce, _plain.Ram, 256, opts);
        _device = new(DeviceMemory.Identity(_plain.Ram), _driver.DeviceLayout, opts);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        System.Runtime.InteropServices.NativeMemory.AlignedFree(_src);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(_dst);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(_ring);
        _plain.Ram.Dispose();
    }

    /// <summary>The reference: 4 KiB between two native buffers that stay hot in L1.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Batch), BytesPerOp(Payload)]
    public void Memcpy4K()
    {
        for (int i = 0; i < Batch; i++) Buffer.MemoryCopy(_src, _dst, Payload, Payload);
    }

    /// <summary>
    /// Context, not a target: memcpy whose destination walks a 1 MiB area, i.e. what each copy costs when the slot is not
    /// cache-hot (many mappings outstanding, or a pool allocator that rotates, as this one did before slot reuse).
    /// </summary>
    [Benchmark(OperationsPerInvoke = Batch), BytesPerOp(Payload)]
    public void Memcpy4KRotating()
    {
        for (int i = 0; i < Batch; i++)
        {
            Buffer.MemoryCopy(_src, _ring + _rot, Payload, Payload);
            _rot = (nuint)((_rot + Payload) & (PoolSize - 1));
        }
    }
    private nuint _rot;

    /// <summary>dma_map(TO_DEVICE) + dma_unmap of 4 KiB: one copy into the pool.</summary>
    [Benchmark(OperationsPerInvoke = Batch), BytesPerOp(Payload)]
    public void BounceToDevice4K()
    {
        for (int i = 0; i < Batch; i++)
        {
            if (_bounce.Map(_buf, Payload, DmaDirection.ToDevice, out var m) != DmaStatus.Ok) throw new InvalidOperationException("bounce map failed");
            _bounce.Unmap(m);
        }
    }

    /// <summary>dma_map(FROM_DEVICE) + dma_unmap of 4 KiB: copy in (so unwritten bytes survive) and copy back out.</summary>
    [Benchmark(OperationsPerInvoke = Batch), BytesPerOp(2 * Payload)]
    public void BounceFromDevice4K()
    {
        for (int i = 0; i < Batch; i++)
        {
            if (_bounce.Map(_bufOut, Payload, DmaDirection.FromDevice, out var m) != DmaStatus.Ok) throw new InvalidOperationException("bounce map failed");
            _bounce.Unmap(m);
        }
    }

    /// <summary>
    /// Full ring round trip of [4 KiB readable | 4 KiB writable] chains through bounce ops (device writes nothing, says
    /// it wrote 4 KiB): 3 × 4 KiB copied per chain (readable in, writable in, writable out).
    /// </summary>
    [Benchmark(OperationsPerInvoke = Batch), BytesPerOp(3 * Payload)]
    public int BounceRing4K()
    {
        ReadOnlySpan<BufferSegment> r = [new BufferSegment(_buf, Payload)];
        ReadOnlySpan<BufferSegment> w = [new BufferSegment(_bufOut, Payload)];
        for (int i = 0; i < Batch; i++) _driver.Add(r, w, _token, out _);
        while (_device.Pop(out var chain) == QueueStatus.Ok) _device.AddUsed(chain!, Payload);
        int n = 0;
        while (_driver.GetUsed(out _, out _) == QueueStatus.Ok) n++;
        if (n != Batch) throw new InvalidOperationException($"ring round trip returned {n} of {Batch} chains: {_driver.Error} {_device.Error}");
        return n;
    }
}
