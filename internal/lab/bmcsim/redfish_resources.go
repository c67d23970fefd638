package bmcsim

import "time"

func link(uri string) map[string]any { return map[string]any{"@odata.id": uri} }

func collection(odataType, uri, name string, ids []string) map[string]any {
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = link(uri + "/" + id)
	}
	return map[string]any{
		"@odata.type":         odataType,
		"@odata.id":           uri,
		"Name":                name,
		"Members":             members,
		"Members@odata.count": len(members),
	}
}

func (s *RedfishServer) serviceRoot() map[string]any {
	return map[string]any{
		"@odata.type":    "#ServiceRoot.v1_15_0.ServiceRoot",
		"@odata.id":      rfRoot + "/",
		"Id":             "RootService",
		"Name":           "rackboot lab BMC",
		"RedfishVersion": redfishVersion,
		"Vendor":         "rackboot",
		"Product":        "rackboot lab Redfish emulator",
		"Systems":        link(rfSystems),
		"Chassis":        link(rfChassis),
		"Managers":       link(rfManagers),
		"SessionService": link(rfSessionSvc),
		"Links":          map[string]any{"Sessions": link(rfSessions)},
		"ProtocolFeaturesSupported": map[string]any{
			"ExcerptQuery":    false,
			"OnlyMemberQuery": false,
			"FilterQuery":     false,
			"SelectQuery":     false,
			"ExpandQuery":     map[string]any{"ExpandAll": false, "Levels": false, "Links": false, "NoLinks": false},
		},
	}
}

func (s *RedfishServer) sessionService() map[string]any {
	return map[string]any{
		"@odata.type":    "#SessionService.v1_1_8.SessionService",
		"@odata.id":      rfSessionSvc,
		"Id":             "SessionService",
		"Name":           "Session Service",
		"ServiceEnabled": true,
		"SessionTimeout": int(s.cfg.SessionTimeout / time.Second),
		"Sessions":       link(rfSessions),
		"Status":         map[string]any{"State": "Enabled", "Health": "OK"},
	}
}

func sessionResource(sess *session) map[string]any {
	return map[string]any{
		"@odata.type": "#Session.v1_6_0.Session",
		"@odata.id":   rfSessions + "/" + sess.id,
		"Id":          sess.id,
		"Name":        "User Session",
		"UserName":    sess.user,
		"SessionType": "Redfish",
		"CreatedTime": sess.created.UTC().Format(time.RFC3339),
		// DSP0266: the password is null in responses.
		"Password": nil,
	}
}

func (s *RedfishServer) managerResource() map[string]any {
	servers := make([]any, len(s.ids))
	chassis := make([]any, len(s.ids))
	for i, id := range s.ids {
		servers[i] = link(rfSystems + "/" + id)
		chassis[i] = link(rfChassis + "/" + id)
	}
	return map[string]any{
		"@odata.type": "#Manager.v1_17_0.Manager",
		"@odata.id":   rfManagers + "/" + rfManagerID,
		"Id":          rfManagerID,
		"Name":        "rackboot lab BMC",
		"ManagerType": "BMC",
		"Model":       "rackboot lab Redfish emulator",
		"PowerState":  "On",
		"Status":      map[string]any{"State": "Enabled", "Health": "OK"},
		"Links": map[string]any{
			"ManagerForServers": servers,
			"ManagerForChassis": chassis,
		},
	}
}

func chassisResource(id string, st PowerState) map[string]any {
	return map[string]any{
		"@odata.type": "#Chassis.v1_22_0.Chassis",
		"@odata.id":   rfChassis + "/" + id,
		"Id":          id,
		"Name":        id,
		"ChassisType": "RackMount",
		"PowerState":  rfPowerState(st),
		"Status":      map[string]any{"State": "Enabled", "Health": "OK"},
		"Links": map[string]any{
			"ComputerSystems": []any{link(rfSystems + "/" + id)},
			"ManagedBy":       []any{link(rfManagers + "/" + rfManagerID)},
		},
	}
}

func odataServiceDocument() map[string]any {
	entry := func(name, url string) map[string]any {
		return map[string]any{"name": name, "kind": "Singleton", "url": url}
	}
	return map[string]any{
		"@odata.context": rfRoot + "/$metadata",
		"value": []any{
			entry("Service", rfRoot+"/"),
			entry("Systems", rfSystems),
			entry("Chassis", rfChassis),
			entry("Managers", rfManagers),
			entry("SessionService", rfSessionSvc),
		},
	}
}

// metadataXML is the OData CSDL document DSP0266 requires at /redfish/v1/$metadata: the
// DMTF schemas this service uses, by reference.
const metadataXML = `<?xml version="1.0" encoding="UTF-8"?>
<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ServiceRoot_v1.xml"><edmx:Include Namespace="ServiceRoot"/><edmx:Include Namespace="ServiceRoot.v1_15_0"/></edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ComputerSystemCollection_v1.xml"><edmx:Include Namespace="ComputerSystemCollection"/></edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ComputerSystem_v1.xml"><edmx:Include Namespace="ComputerSystem"/><edmx:Include Namespace="ComputerSystem.v1_20_0"/></edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ChassisCollection_v1.xml"><edmx:Include Namespace="ChassisCollection"/></edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Chassis_v1.xml"><edmx:Include Namespace="Chassis"/><edmx:Include Namespace="Chassis.v1_22_0"/></edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ManagerCollection_v1.xml"><edmx:Include Namespace="ManagerCollection"/></edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Manager_v1.xml"><edmx:Include Namespace="Manager"/><edmx:Include Namespace="Manager.v1_17_0"/></edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/SessionService_v1.xml"><edmx:Include Namespace="SessionService"/><edmx:Include Namespace="SessionService.v1_1_8"/></edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/SessionCollection_v1.xml"><edmx:Include Namespace="SessionCollection"/></edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Session_v1.xml"><edmx:Include Namespace="Session"/><edmx:Include Namespace="Session.v1_6_0"/></edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Message_v1.xml"><edmx:Include Namespace="Message"/><edmx:Include Namespace="Message.v1_1_2"/></edmx:Reference>
  <edmx:DataServices>
    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">
      <EntityContainer Name="Service" Extends="ServiceRoot.v1_15_0.ServiceContainer"/>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
`
