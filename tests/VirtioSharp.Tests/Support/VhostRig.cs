using VirtioSharp.Devices.Block;
using VirtioSharp.Memory;
using VirtioSharp.Testing;
using VirtioSharp.VhostUser.Backend;

namespace VirtioSharp.Tests.Support;

/// <summary>An in-process vhost-user-blk back-end on a temporary socket, served on a background thread.</summary>
public sealed class VhostRig : IDisposable
{
    private readonly Thread _thread;
    private readonly string _dir;

    public VhostRig(ulong diskBytes = 1 << 20, int queues = 1, bool readOnly = false, bool packed = false, VhostUserBackendOptions? options = null, IBlockStorage? storage = null, bool accessPlatform = true)
    {
        _dir = Directory.CreateTempSubdirectory("vs-vhost-").FullName;
        SocketPath = Path.Combine(_dir, "s");
        Disk = new MemoryBackend(diskBytes, readOnly);
        new Random(11).NextBytes(Disk.Data);
        DiskBefore = Disk.Data.ToArray();
        Device = storage is not null
            ? new BlockDevice<DeviceMemory<TranslatorRef, RamPort>>(storage, new BlockDeviceOptions { NumQueues = queues, OfferAccessPlatform = accessPlatform, OfferPacked = packed })
            : new BlockDevice<DeviceMemory<TranslatorRef, RamPort>>(Disk, new BlockDeviceOptions { NumQueues = queues, OfferAccessPlatform = accessPlatform, OfferPacked = packed });
        // Unlimited logging unless a test asks: tests read the lines.
        Server = new VhostUserServer(SocketPath, Device, Log, options ?? new VhostUserBackendOptions { LogLinesPerSecond = 0 });
        _thread = new Thread(Server.Run) { IsBackground = true, Name = "vhost-rig" };
        _thread.Start();
    }

    public string SocketPath { get; }
    public MemoryBackend Disk { get; }
    public byte[] DiskBefore { get; }
    public BlockDevice<DeviceMemory<TranslatorRef, RamPort>> Device { get; }
    public VhostUserServer Server { get; }
    public ListLogger Log { get; } = new();

    public RawClient Connect() => new(SocketPath);

    /// <summary>Waits until the server has finished <paramref name="connections"/> connections (it logs each close).</summary>
    public bool WaitClosed(int connections, int timeoutMs = 5000)
    {
        var end = Environment.TickCount64 + timeoutMs;
        while (Environment.TickCount64 < end)
        {
            if (Interlocked.Read(ref Server.Stats.ConnectionsEnded) >= connections) return true;
            Thread.Sleep(10);
        }
        return false;
    }

    public void Dispose()
    {
        Server.Dispose();
        _thread.Join(5000);
        Directory.Delete(_dir, true);
    }
}
