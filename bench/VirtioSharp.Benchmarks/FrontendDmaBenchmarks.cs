using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Logging.Abstractions;
using VirtioSharp.Devices.Block;
using VirtioSharp.Dma;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Memory;
using VirtioSharp.Spec;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Benchmarks;

/// <summary>
/// The cost of protection over real shared memory: BlkDriver reads through a <see cref="VhostUserFrontend"/> that shares
/// all its RAM (direct ops), one that shares only a window of rings and a bounce pool (bounce ops), and one that is the
/// device's IOMMU (IOMMU ops, strict or lazy invalidation, translations by IOTLB MISS/UPDATE), each against its own
/// in-process VhostUserServer (a worker thread, eventfds, a memfd; the disk is in memory). One op = one read request of
/// <see cref="Size"/> bytes, completed and copied out to managed memory in every mode.
/// </summary>
[MemoryDiagnoser]
public class FrontendDmaBenchmarks
{
    private sealed class Side : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("vs-bench-").FullName;
        private readonly VhostUserServer _server;
        private readonly Thread _thread;
        public readonly VhostUserFrontend Frontend;
        public readonly BlkDriver Driver;

        public Side(VhostUserFrontendOptions options)
        {
            string sock = Path.Combine(_dir, "s");
            var device = new BlockDevice<DeviceMemory<TranslatorRef, RamPort>>(new MemoryBackend(64 << 20), new BlockDeviceOptions { OfferAccessPlatform = options.Iommu is not null });
            _server = new VhostUserServer(sock, device, NullLogger.Instance, new VhostUserBackendOptions());
            _thread = new Thread(_server.Run) { IsBackground = true };
            _thread.Start();
            for (int i = 0; i < 200 && !File.Exists(sock); i++) Thread.Sleep(10);
            Frontend = VhostUserFrontend.Connect(sock, DeviceId.Block, options with { MemorySize = 32 << 20 });
            Driver = BlkDriver.Probe(Frontend, Frontend.Environment(pollBudget: 1000));
        }

        public void Dispose()
        {
            Driver.Dispose();
            Frontend.Dispose();
            _server.Dispose();
            _thread.Join(5000);
            Directory.Delete(_dir, true);
        }
    }

    private Side _direct = null!, _bounce = null!, _strict = null!, _lazy = null!;
    private byte[] _buffer = null!;
    private ulong _sector;

    /// <summary>Bytes per read.</summary>
    [Params(4096, 131072)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _direct = new Side(new VhostUserFrontendOptions());
        _bounce = new Side(new VhostUserFrontendOptions { SharedWindowSize = 4 << 20 });
        _strict = new Side(new VhostUserFrontendOptions { Iommu = InvalidationMode.Strict });
        _lazy = new Side(new VhostUserFrontendOptions { Iommu = InvalidationMode.Lazy });
        _buffer = new byte[Size];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _direct.Dispose();
        _bounce.Dispose();
        _strict.Dispose();
        _lazy.Dispose();
    }

    private ulong NextSector() => _sector = (_sector + (ulong)(Size / 512)) % ((48UL << 20) / 512);

    /// <summary>All RAM shared, direct ops.</summary>
    [Benchmark(Baseline = true)]
    public BlkStatus Direct() => _direct.Driver.Read(NextSector(), _buffer);

    /// <summary>Only the window shared, every buffer bounced through the pool.</summary>
    [Benchmark]
    public BlkStatus BounceOnly() => _bounce.Driver.Read(NextSector(), _buffer);

    /// <summary>The front-end as the IOMMU, an INVALIDATE confirmed per unmap.</summary>
    [Benchmark]
    public BlkStatus IommuStrict() => _strict.Driver.Read(NextSector(), _buffer);

    /// <summary>The front-end as the IOMMU, invalidations batched (IOVAs held back until the flush).</summary>
    [Benchmark]
    public BlkStatus IommuLazy() => _lazy.Driver.Read(NextSector(), _buffer);
}
