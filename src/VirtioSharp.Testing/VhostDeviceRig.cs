using VirtioSharp.Devices;
using VirtioSharp.Memory;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Testing;

/// <summary>
/// Any device model served in-process by the real vhost-user back-end (<see cref="VhostUserServer"/>) on a temporary
/// socket, on a background thread. <see cref="Connect"/> gives a front-end to drive it as a guest driver would.
/// </summary>
public sealed class VhostDeviceRig : IDisposable
{
    private readonly Thread _thread;
    private readonly string _dir;

    /// <summary>Starts serving <paramref name="device"/> on a fresh socket in a temporary directory.</summary>
    public VhostDeviceRig(IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> device)
    {
        _dir = Directory.CreateTempSubdirectory("vs-vhost-dev-").FullName;
        SocketPath = Path.Combine(_dir, "s");
        Device = device;
        Server = new VhostUserServer(SocketPath, device, Log);
        _thread = new Thread(Server.Run) { IsBackground = true, Name = "vhost-device-rig" };
        _thread.Start();
    }

    /// <summary>The unix socket the server listens on.</summary>
    public string SocketPath { get; }
    /// <summary>The device being served.</summary>
    public IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> Device { get; }
    /// <summary>The back-end serving the socket.</summary>
    public VhostUserServer Server { get; }
    /// <summary>What the back-end logged.</summary>
    public ListLogger Log { get; } = new();

    /// <summary>Our own front-end on the socket with <paramref name="memory"/> bytes of guest memory, as the driver's transport.</summary>
    public VhostUserFrontend Connect(ulong memory = 16UL << 20) => VhostUserFrontend.Connect(SocketPath, Device.DeviceId, memory);

    /// <summary>Log lines that say the device needed a reset (none expected in a clean run).</summary>
    public IEnumerable<string> ResetLines => Log.Lines.Where(l => l.Contains("needs a reset") || l.Contains("worker failed"));

    /// <summary>Stops the server, waits for its thread (up to 5 s) and deletes the temporary directory.</summary>
    public void Dispose()
    {
        Server.Dispose();
        _thread.Join(5000);
        Directory.Delete(_dir, true);
    }
}
