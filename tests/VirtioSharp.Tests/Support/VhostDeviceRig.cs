using VirtioSharp.Devices;
using VirtioSharp.Memory;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Tests.Support;

/// <summary>Any device model served in-process by the real vhost-user back-end on a temporary socket.</summary>
public sealed class VhostDeviceRig : IDisposable
{
    private readonly Thread _thread;
    private readonly string _dir;

    public VhostDeviceRig(IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> device)
    {
        _dir = Directory.CreateTempSubdirectory("vs-vhost-dev-").FullName;
        SocketPath = Path.Combine(_dir, "s");
        Device = device;
        Server = new VhostUserServer(SocketPath, device, Log);
        _thread = new Thread(Server.Run) { IsBackground = true, Name = "vhost-device-rig" };
        _thread.Start();
    }

    public string SocketPath { get; }
    public IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> Device { get; }
    public VhostUserServer Server { get; }
    public ListLogger Log { get; } = new();

    /// <summary>Our own front-end on the socket, as the driver's transport.</summary>
    internal VhostUserFrontend Connect(ulong memory = 16UL << 20) => VhostUserFrontend.Connect(SocketPath, Device.DeviceId, memory);

    /// <summary>Log lines that say the device needed a reset (none expected in a clean run).</summary>
    public IEnumerable<string> ResetLines => Log.Lines.Where(l => l.Contains("needs a reset") || l.Contains("worker failed"));

    public void Dispose()
    {
        Server.Dispose();
        _thread.Join(5000);
        Directory.Delete(_dir, true);
    }
}
