package latent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/latent"
)

// EC2API is the part of the EC2 API the EC2 driver uses; *ec2.Client
// implements it.
type EC2API interface {
	RunInstances(context.Context, *ec2.RunInstancesInput, ...func(*ec2.Options)) (*ec2.RunInstancesOutput, error)
	TerminateInstances(context.Context, *ec2.TerminateInstancesInput, ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
	DescribeInstances(context.Context, *ec2.DescribeInstancesInput, ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// EC2TagInstance is the tag that holds an instance's name (besides
// Name, which people may edit in the console): Stop, Check and List find
// instances by it.
const EC2TagInstance = "starforge:instance"

// EC2 starts each instance as an Amazon EC2 instance from ImageID, with
// user data that starts the worker, tagged Name=NAME and
// starforge:instance=NAME; Stop terminates it. With Spot the instance is
// a one-time spot instance, which EC2 may take back at any time: Check
// then reports it gone and the master retries its build elsewhere.
//
// An EC2's fields must not change once it is in use; its methods are safe
// for concurrent use.
type EC2 struct {
	Client           EC2API
	ImageID          string // AMI, required
	InstanceType     string // default t3.micro
	SubnetID         string
	SecurityGroupIDs []string
	KeyName          string
	Spot             bool
	MaxPrice         string            // spot only; "" is the on-demand price
	Tags             map[string]string // more tags for the instance
	// UserData is a text/template over latent.Instance; "" means
	// DefaultUserData.
	UserData string
}

// NewEC2 returns the driver an ec2_driver(...) declares, with an SDK
// client for its region and endpoint and the given static credentials
// (the values of its access_key_id and secret_access_key secrets).
func NewEC2(c *config.EC2Driver, accessKeyID, secretAccessKey string) *EC2 {
	opts := ec2.Options{
		Region:      c.Region,
		Credentials: credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, ""),
	}
	if c.Endpoint != "" {
		opts.BaseEndpoint = aws.String(c.Endpoint)
	}
	return &EC2{
		Client: ec2.New(opts), ImageID: c.Image, InstanceType: c.InstanceType, SubnetID: c.Subnet,
		SecurityGroupIDs: c.SecurityGroups, KeyName: c.KeyName, Spot: c.Spot, MaxPrice: c.MaxPrice,
		Tags: c.Tags, UserData: c.UserData,
	}
}

// Start runs one instance. The instance's name is the request's client
// token, so a retried Start does not start a second one.
func (e *EC2) Start(ctx context.Context, inst latent.Instance) error {
	ud, err := userData(e.UserData, inst)
	if err != nil {
		return fmt.Errorf("ec2: instance %s: %w", inst.Name, err)
	}
	tags := []types.Tag{{Key: aws.String("Name"), Value: aws.String(inst.Name)}, {Key: aws.String(EC2TagInstance), Value: aws.String(inst.Name)}}
	keys := make([]string, 0, len(e.Tags))
	for k := range e.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		tags = append(tags, types.Tag{Key: aws.String(k), Value: aws.String(e.Tags[k])})
	}
	in := &ec2.RunInstancesInput{
		ImageId:                           aws.String(e.ImageID),
		InstanceType:                      types.InstanceType(or(e.InstanceType, "t3.micro")),
		MinCount:                          aws.Int32(1),
		MaxCount:                          aws.Int32(1),
		ClientToken:                       aws.String(inst.Name),
		UserData:                          aws.String(base64.StdEncoding.EncodeToString([]byte(ud))),
		InstanceInitiatedShutdownBehavior: types.ShutdownBehaviorTerminate,
		TagSpecifications:                 []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: tags}},
		SecurityGroupIds:                  e.SecurityGroupIDs,
	}
	if e.SubnetID != "" {
		in.SubnetId = aws.String(e.SubnetID)
	}
	if e.KeyName != "" {
		in.KeyName = aws.String(e.KeyName)
	}
	if e.Spot {
		spot := &types.SpotMarketOptions{SpotInstanceType: types.SpotInstanceTypeOneTime, InstanceInterruptionBehavior: types.InstanceInterruptionBehaviorTerminate}
		if e.MaxPrice != "" {
			spot.MaxPrice = aws.String(e.MaxPrice)
		}
		in.InstanceMarketOptions = &types.InstanceMarketOptionsRequest{MarketType: types.MarketTypeSpot, SpotOptions: spot}
	}
	out, err := e.Client.RunInstances(ctx, in)
	if err != nil {
		return fmt.Errorf("ec2: instance %s: run: %w", inst.Name, err)
	}
	if len(out.Instances) != 1 {
		return fmt.Errorf("ec2: instance %s: run started %d instances, want 1", inst.Name, len(out.Instances))
	}
	return nil
}

// live are the states of an instance that runs or may run again.
var live = []string{"pending", "running", "stopping", "stopped"}

// find returns the live instances whose starforge:instance tag matches
// value (which may end in * for a prefix).
func (e *EC2) find(ctx context.Context, value string) ([]types.Instance, error) {
	in := &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + EC2TagInstance), Values: []string{value}},
		{Name: aws.String("instance-state-name"), Values: live},
	}}
	var found []types.Instance
	p := ec2.NewDescribeInstancesPaginator(e.Client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			found = append(found, r.Instances...)
		}
	}
	return found, nil
}

// Stop terminates the instances tagged with name. None is not an error.
func (e *EC2) Stop(ctx context.Context, name string) error {
	found, err := e.find(ctx, name)
	if err != nil {
		return fmt.Errorf("ec2: stop %s: describe: %w", name, err)
	}
	var ids []string
	for _, i := range found {
		if tag(i.Tags, EC2TagInstance) == name {
			ids = append(ids, aws.ToString(i.InstanceId))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := e.Client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids}); err != nil {
		return fmt.Errorf("ec2: stop %s: terminate %s: %w", name, strings.Join(ids, ", "), err)
	}
	return nil
}

// Check returns nil while the instance is pending or running, and an
// error wrapping latent.ErrGone, with EC2's reason (a spot instance
// taken back), once it is not.
func (e *EC2) Check(ctx context.Context, name string) error {
	out, err := e.Client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + EC2TagInstance), Values: []string{name}},
	}})
	if err != nil {
		return fmt.Errorf("ec2: check %s: %w", name, err)
	}
	var last *types.Instance
	for _, r := range out.Reservations {
		for i := range r.Instances {
			inst := &r.Instances[i]
			if tag(inst.Tags, EC2TagInstance) != name || inst.State == nil {
				continue
			}
			switch inst.State.Name {
			case types.InstanceStateNamePending, types.InstanceStateNameRunning:
				return nil
			}
			last = inst
		}
	}
	if last == nil {
		return fmt.Errorf("ec2: instance %s: %w: no such instance", name, latent.ErrGone)
	}
	reason := ""
	if last.StateReason != nil && last.StateReason.Message != nil {
		reason = ": " + *last.StateReason.Message
	}
	return fmt.Errorf("ec2: instance %s (%s): %w: %s%s", name, aws.ToString(last.InstanceId), latent.ErrGone, last.State.Name, reason)
}

// List returns the names of the live instances whose name starts with
// prefix.
func (e *EC2) List(ctx context.Context, prefix string) ([]string, error) {
	if strings.ContainsAny(prefix, "*?") {
		return nil, errors.New("ec2: list: a prefix with * or ? is not supported")
	}
	found, err := e.find(ctx, prefix+"*")
	if err != nil {
		return nil, fmt.Errorf("ec2: list %s*: %w", prefix, err)
	}
	seen := map[string]bool{}
	var names []string
	for _, i := range found {
		n := tag(i.Tags, EC2TagInstance)
		if strings.HasPrefix(n, prefix) && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

func tag(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

var (
	_ latent.Driver  = (*EC2)(nil)
	_ latent.Checker = (*EC2)(nil)
	_ latent.Lister  = (*EC2)(nil)
)
