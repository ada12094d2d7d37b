using System.Runtime.InteropServices;

namespace VirtioSharp.Host;

/// <summary>A file descriptor a device asked its queue's owner thread to poll, and what to run when it is readable.</summary>
public sealed class DeviceEventSource : IDisposable
{
    private readonly QueueMailbox _owner;

    internal DeviceEventSource(QueueMailbox owner, SafeHandle handle, Action onReadable)
    {
        _owner = owner;
        Handle = handle;
        OnReadable = onReadable;
    }

    /// <summary>The descriptor to poll for input.</summary>
    public SafeHandle Handle { get; }
    /// <summary>Runs on the owner thread while the descriptor is readable.</summary>
    public Action OnReadable { get; }

    /// <summary>Stops polling it (the handle itself stays the device's to close).</summary>
    public void Dispose() => _owner.Remove(this);
}
